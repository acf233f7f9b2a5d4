"""Command line: parses arguments and calls one function per command. No training or data logic here.

Interface layer. Imports are deferred into each command so `tuneboard --help` starts without torch.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import warnings
from collections.abc import Callable

from .. import __version__
from ..errors import TuneboardError, raise_interrupted


def _config(args: argparse.Namespace):
    from .. import config

    path, overrides = args.config, list(args.overrides)
    if path and "=" in path and not path.endswith((".yaml", ".yml")):  # `tuneboard chat key=value ...`
        path, overrides = None, [path, *overrides]
    cfg, notes = config.load(path, overrides)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    return cfg


def cmd_train(args: argparse.Namespace) -> int:
    from ..train import workflow

    return workflow.main(_config(args), command=(args.config, list(args.overrides), args.debug))


def cmd_eval(args: argparse.Namespace) -> int:
    from ..evaluate import workflow as evaluate

    evaluate.run(_config(args))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from ..export import workflow as export

    export.run(_config(args))
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    from . import chat as chat_cli

    return chat_cli.run(_config(args))


def cmd_api(args: argparse.Namespace) -> int:
    from ..api import server

    return server.run(_config(args), host=args.host, port=args.port)


def cmd_webchat(args: argparse.Namespace) -> int:
    from ..webui import webchat

    return webchat.run(_config(args), host=args.host, port=args.port)


def cmd_webui(args: argparse.Namespace) -> int:
    from ..webui import app

    return app.run(host=args.host, port=args.port, root=args.root)


def _light(args: argparse.Namespace):
    """Tokenizer + template for check/preview without importing torch or transformers."""
    from ..config import Config
    from ..data.templates.resolve import load_template
    from ..model.load import light_tokenizer, resolve_dir

    model_dir = resolve_dir(args.model, Config(model_name_or_path=args.model))
    tok = light_tokenizer(model_dir)
    return tok, load_template(args.template, tok, model_dir)


def cmd_data(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..data import commands as tools

    sub = args.data_command
    if sub == "identity":
        out = tools.identity(
            args.name, args.author, Path(args.file), Path(args.output) if args.output else None
        )
        print(f"filled name={args.name!r} author={args.author!r} into {out}")
    elif sub == "add":
        entry = tools.add(args.name, Path(args.file), Path(args.dataset_dir), args.formatting, args.force)
        print(f"registered '{args.name}' in {Path(args.dataset_dir) / 'dataset_info.json'}: {entry}")
    elif sub == "split":
        print(tools.format_split(tools.split(Path(args.file), args.val_size, args.seed, args.force)))
    elif sub == "check":
        spec = tools.resolve_one(args.dataset, Path(args.dataset_dir))
        tok, tpl = _light(args) if args.model else (None, None)
        report = tools.check(spec, tok, tpl, args.cutoff_len)
        print(tools.format_check(report))
        return 1 if report["problems"] else 0
    elif sub == "preview":
        spec = tools.resolve_one(args.dataset, Path(args.dataset_dir))
        tok, tpl = _light(args)
        print(tools.preview(spec, tok, tpl, args.n, args.cutoff_len))
    elif sub == "templates":
        print(tools.templates_table())
    else:
        build_parser().parse_args(["data", "-h"])
    return 0


def add_data_commands(p: argparse.ArgumentParser) -> None:
    dsub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    q = dsub.add_parser("identity", help="fill {{name}} and {{author}} in the identity dataset")
    q.add_argument("--name", required=True)
    q.add_argument("--author", required=True)
    q.add_argument("--file", default="data/identity.json")
    q.add_argument("--output", default=None, help="write the filled data here instead of in place")
    q = dsub.add_parser("add", help="validate a data file and register it in dataset_info.json")
    q.add_argument("name")
    q.add_argument("file")
    q.add_argument("--formatting", choices=["alpaca", "sharegpt", "openai"], default=None)
    q.add_argument("--dataset-dir", default="data")
    q.add_argument("--force", action="store_true", help="replace an existing entry of that name")
    q = dsub.add_parser("split", help="split a data file into <stem>_train.json and <stem>_test.json")
    q.add_argument("file")
    q.add_argument("--val-size", type=float, default=0.1, help="fraction (<1) or number of test records")
    q.add_argument("--seed", type=int, default=42)
    q.add_argument("--force", action="store_true", help="replace existing <stem>_train/_test.json files")
    dsub.add_parser("templates", help="list the named chat templates (the `template:` setting)")
    for name, help in (
        ("check", "report problems, lengths and duplicates"),
        ("preview", "show trained spans"),
    ):
        q = dsub.add_parser(name, help=help)
        q.add_argument("dataset", help="a registered dataset name or a data file")
        q.add_argument("--dataset-dir", default="data")
        q.add_argument("--template", default=None)
        q.add_argument("--model", default="builtin:tiny" if name == "preview" else None)
        q.add_argument("--cutoff-len", type=int, default=2048)
        if name == "preview":
            q.add_argument("-n", type=int, default=2)


def cmd_model_tiny(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..model import tiny

    spec = tiny.TinySpec.sized(
        args.hidden_size, args.layers, args.heads, args.kv_heads, args.intermediate_size, args.vocab_size
    )
    out = Path(args.outdir)
    if out.exists() and any(out.iterdir()):
        raise TuneboardError(f"{out}: already exists and is not empty")
    tiny.build(out, spec)
    print(f"wrote the builtin tiny model to {out}")
    return 0


def cmd_env(args: argparse.Namespace) -> int:
    from ..hardware import advice
    from ..hardware import report as env

    report = env.report()
    print(env.format_report(report))
    if args.model:
        print(advice.model_advice(args.model, report, args.method, args.cutoff_len, args.batch_size))
    return 0


class _HelpKeys(argparse.Action):
    """`--help-keys [KEYWORD]`: every config key (or those matching KEYWORD) with its help, then exit."""

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: object, values: object, option: object = None
    ) -> None:
        from .. import keys
        from ..config import Config

        text = keys.listing(Config, str(values or ""))
        if not text:
            parser.exit(1, f"no config key matches {values!r}\n")
        print(text)
        parser.exit(0)


def _add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", nargs="?", help="YAML config (LLaMA-Factory key names)")
    p.add_argument("overrides", nargs="*", help="key=value settings that override the YAML")
    p.add_argument(
        "--help-keys",
        nargs="?",
        const="",
        metavar="KEYWORD",
        action=_HelpKeys,
        help="list every config key: type, default, choices, help (or those matching KEYWORD)",
    )


def _add_server(p: argparse.ArgumentParser, port: int) -> None:
    p.add_argument("--host", default=None, help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help=f"port (default {port})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tuneboard",
        description="Fine-tune open LLMs on your own data: data -> train -> eval -> chat -> export -> serve.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("--version", action="version", version=f"tuneboard {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, func: Callable, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(func=func)
        return p

    _add_config(command("train", cmd_train, "fine-tune a model (SFT: lora, freeze or full)"))
    _add_config(command("eval", cmd_eval, "generate on a test set and compute BLEU-4 / ROUGE / accuracy"))
    _add_config(command("chat", cmd_chat, "chat with a model in the terminal (streaming)"))
    _add_config(command("export", cmd_export, "merge adapters and write a standard model directory"))
    p = command("api", cmd_api, "OpenAI-compatible API server")
    _add_config(p)
    _add_server(p, 8000)
    p = command("webchat", cmd_webchat, "chat with a model in the browser")
    _add_config(p)
    _add_server(p, 7860)
    p = command("webui", cmd_webui, "the whole workflow in the browser (Chinese / English)")
    _add_server(p, 7860)
    p.add_argument("--root", default=None, help="workspace root the UI may read and write (default: cwd)")
    p = command("env", cmd_env, "hardware report and training memory estimate")
    p.add_argument("--model", help="model id, local directory or size such as 7B")
    p.add_argument("--method", default=None, choices=["lora", "qlora", "freeze", "full"])
    p.add_argument("--cutoff-len", type=int, default=1024)
    p.add_argument("--batch-size", type=int, default=1)

    p = command("model", lambda a: (build_parser().parse_args(["model", "-h"]), 0)[1], "builtin model tools")
    msub = p.add_subparsers(dest="model_command", metavar="SUBCOMMAND")
    t = msub.add_parser("tiny", help="write the builtin tiny model as a normal HF model directory")
    t.set_defaults(func=cmd_model_tiny)
    t.add_argument("outdir")
    t.add_argument("--hidden-size", type=int, default=256)
    t.add_argument("--layers", type=int, default=4)
    t.add_argument("--heads", type=int, default=4)
    t.add_argument("--kv-heads", type=int, default=2)
    t.add_argument("--intermediate-size", type=int, default=None)
    t.add_argument(
        "--vocab-size",
        type=int,
        default=None,
        help="BPE target and minimum model vocabulary (extra rows unused); default: the builtin model's",
    )

    add_data_commands(
        command("data", cmd_data, "prepare datasets: identity, add, split, check, preview, templates")
    )
    return parser


def process_defaults() -> None:
    """Process-wide settings of every command, made before torch is imported (an explicit value wins).

    THP_MEM_ALLOC_ENABLE: PyTorch's CPU allocator puts tensors of 2 MB and more on transparent huge pages. It is
    read once, at torch's first allocation. On CPU LoRA training it lowered peak RSS by about 13% at the same
    speed (bench/README.md, "Training throughput"); without a THP-capable kernel it does nothing."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
    # A child of a non-interactive shell's background job (the web UI started with `&`, say) inherits SIGINT
    # ignored: the UI's Stop would be lost until training installs its own handler. SIGINT means stop here,
    # raised as errors.Interrupted so that the exit status stays 130 (see there).
    if signal.getsignal(signal.SIGINT) in (signal.SIG_IGN, signal.default_int_handler):
        signal.signal(signal.SIGINT, raise_interrupted)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    process_defaults()
    if not args.debug:
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.formatwarning = lambda msg, cat, *a, **k: f"warning: {msg}\n"  # type: ignore[assignment]
    try:
        return int(args.func(args) or 0)
    except TuneboardError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            raise
        print(f"error: {type(exc).__name__}: {exc}\n(run with --debug for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

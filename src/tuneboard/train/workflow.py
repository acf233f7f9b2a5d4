"""`tuneboard train`: config + data + model -> HF Trainer -> adapter or model, logs, plot, checkpoints.

Training layer: `main` is the whole command (cli/main.py only parses and calls it; the web UI runs the CLI),
`run` one training on this process: preflight -> arguments -> tokenizer and template -> datasets -> model and
adapters -> trainer -> train -> finish.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from ..config import Config, replace
from ..data.pipeline import DataBundle, load_split, prepare_datasets
from ..data.templates.named import get_template, tool_templates
from ..data.templates.resolve import load_template
from ..errors import ConfigError
from ..files import write_error
from ..model.adapters import count_parameters, prepare, save_pissa_init
from ..model.load import check_source, load_model, load_tokenizer, resolve_source
from ..rundir import clear_previous_run, pissa_init_path, save_config
from .arguments import check_deepspeed, check_trainer_names, resolve_precision, training_args, weight_dtype
from .checkpoints import check_output_dir, resolve_resume
from .launch import end_process_group, is_main_process, say, torchrun_argv, warn, world_size
from .launch import run as run_launcher

log = logging.getLogger(__name__)


def preflight(cfg: Config) -> tuple[list[Any], list[Any]]:
    """Checks that need no torch, run once before any training process starts; the data is read and checked
    here too (before a model is downloaded), and its (train, eval) conversations returned for reuse."""
    if not cfg.datasets:
        raise ConfigError(f"{cfg.source}: 'dataset' is required for training")
    if cfg.max_steps <= 0 and cfg.num_train_epochs == 0:
        raise ConfigError(
            f"{cfg.source}: nothing to train: 'num_train_epochs' is 0 and 'max_steps' is not set"
        )
    check_deepspeed(cfg)
    check_output_dir(cfg)
    resolve_resume(cfg)
    check_source(cfg)
    if cfg.template not in (None, "", "auto"):
        get_template(cfg.template)
    return load_split(cfg)


def warn_unrendered_tools(conversations: tuple[list, list], template: Any) -> None:
    """Tool definitions a template does not write are not trained on: say so once."""
    with_tools = sum(1 for c in (*conversations[0], *conversations[1]) if c.tools)
    if with_tools and not template.renders_tools:
        warn(
            f"{with_tools} records carry tools (function definitions), which template {template.name} does not "
            f"render: they are trained without them (templates {', '.join(tool_templates())} render them)"
        )


def summary(cfg: Config, model: Any, data: DataBundle, args: Any, precision: str, base: str) -> None:
    total, trainable = count_parameters(model)
    world = world_size()
    eff = cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps * world
    s = data.train.stats
    lines = [
        f"model      {base}  ({total / 1e6:.2f}M parameters, {trainable / 1e6:.3f}M trainable = "
        f"{100 * trainable / max(total, 1):.2f}%, {cfg.finetuning_type})",
        f"template   {data.template_name}",
        f"train      {len(data.train)} samples, {s.tokens} tokens ({s.trained_tokens} trained) "
        f"from {', '.join(cfg.datasets)}"
        + (f" ({s.records} documents cut into blocks of {cfg.cutoff_len})" if cfg.stage == "pt" else "")
        + (
            " ({} desirable, {} undesirable replies)".format(*data.train.counts())
            if cfg.stage == "kto"
            else ""
        ),
    ]
    if data.eval is not None:
        lines.append(f"eval       {len(data.eval)} samples, {data.eval.stats.tokens} tokens")
    if s.truncated or s.dropped_no_target:
        lines.append(
            f"cutoff     {s.truncated} samples truncated to cutoff_len={cfg.cutoff_len}; "
            f"{s.dropped_no_target} dropped (no trainable token left)"
            + (f", e.g. {s.dropped_examples[0]}" if s.dropped_examples else "")
        )
    lines.append(
        f"batch      {cfg.per_device_train_batch_size} x {cfg.gradient_accumulation_steps} accumulation x "
        f"{world} process(es) = {eff} samples per step, {'padding-free' if data.padding_free else 'padded'}"
    )
    weights = str(next(model.parameters()).dtype).removeprefix("torch.")
    lines.append(f"device     {args.device} ({precision} compute, weights loaded in {weights})")
    say("\n".join(lines))


def run(cfg: Config, conversations: tuple[list[Any], list[Any]] | None = None) -> dict[str, Any]:
    """Train; returns the final metrics. Everything is validated before output_dir is touched (`conversations`:
    what `preflight` returned, when the caller ran it)."""
    if conversations is None:
        conversations = preflight(cfg)
    resume = resolve_resume(cfg)
    check_trainer_names(cfg)
    precision = resolve_precision(cfg)
    # TrainingArguments first: it starts the process group (several processes), and DeepSpeed ZeRO-3 / FSDP
    # must be configured before the model is loaded so that its weights are partitioned as they load
    try:
        args = training_args(cfg, precision, has_eval=bool(cfg.eval_datasets or cfg.val_size))
    except (ValueError, ImportError) as exc:  # transformers' own checks of these settings
        raise ConfigError(f"{cfg.source}: {str(exc).strip().splitlines()[0]}") from None
    # downloads, the tiny model and tokenization run once per machine; the other ranks then read the caches
    with args.main_process_first(local=True, desc="model download and preprocessing"):
        source = resolve_source(cfg)
        tokenizer = load_tokenizer(source.base_dir, cfg)
        template = load_template(cfg.template, tokenizer, source.base_dir, source.adapters)
        first = args.local_process_index == 0
        if first:
            warn_unrendered_tools(conversations, template)
        data = prepare_datasets(
            cfg if first else replace(cfg, overwrite_cache=False), tokenizer, template, conversations
        )

    if data.tokenized_saved:
        say(f"tokenized sets saved in {cfg.tokenized_path}; run the same command again to train on them")
        end_process_group()
        return {"tokenized": cfg.tokenized_path}

    from transformers import set_seed

    from .stages import stage_trainer

    set_seed(cfg.seed)  # before the adapters are created: LoRA's initial weights come from this RNG
    model = load_model(source.base_dir, cfg, weight_dtype(cfg, precision), adapters=source.adapters)
    model = prepare(model, cfg, [str(a) for a in source.adapters])

    out = Path(cfg.output_dir)
    if cfg.overwrite_output_dir and not resume and is_main_process():
        clear_previous_run(out)
    trainer = stage_trainer(cfg)(model=model, args=args, data=data, tokenizer=tokenizer, cfg=cfg)
    summary(cfg, model, data, args, precision, source.base_name)
    if is_main_process():
        out.mkdir(parents=True, exist_ok=True)
        save_config(out, cfg)
        if cfg.pissa_init and not resume:
            save_pissa_init(model, pissa_init_path(out))

    start = time.time()
    try:
        interrupted = trainer.train_interruptibly(resume)
        runtime = time.time() - start
        if not interrupted:
            results = trainer.finish(runtime, template)
    except Exception as exc:  # a disk that fills up or turns read-only mid-run (log, checkpoint, final model)
        err = write_error(out, exc, "the complete checkpoints in it are kept")
        if err is None:
            raise
        raise err from None
    finally:
        end_process_group()
    if interrupted:
        say(
            f"\nstopped at step {trainer.state.global_step}; a checkpoint was saved in {out}.\n"
            f"continue with: tuneboard train {cfg.source} resume_from_checkpoint=true"
        )
        return {"interrupted": True, "step": trainer.state.global_step}
    say(f"\ndone in {runtime:.1f}s: {loss_summary(results.get('train_loss'), trainer.state.log_history)}")
    say(f"wrote {out}/ : " + ", ".join(sorted(p.name for p in out.iterdir() if not p.name.startswith("."))))
    return results


def loss_summary(average: float | None, log_history: list[dict]) -> str:
    """The run's loss as said at the end: train_loss is the average over all steps, not the last one's."""
    last = next((r["loss"] for r in reversed(log_history) if "loss" in r), None)
    text = f"average loss {average:.4f}" if average is not None else "average loss unknown"
    return text + (f", last logged step's loss {last:.4f}" if last is not None else "")


def main(cfg: Config, command: tuple[str | None, list[str], bool] | None = None) -> int:
    """`tuneboard train`, top to bottom: check and read the data (before torch), train (the same command on
    every process when several are asked for), then predict on the test set. `command`: (config path,
    overrides, --debug) as typed, to start the other processes with."""
    if cfg.do_train:
        conversations = preflight(cfg)
        argv = torchrun_argv(cfg, *command) if command else None
        if argv:
            return run_launcher(argv)
        result = run(cfg, conversations)
        if result.get("interrupted") or result.get("tokenized"):
            return 0
    if (cfg.do_predict or cfg.predict_with_generate) and is_main_process():
        from ..evaluate import workflow as evaluate

        evaluate.run(trained_model_config(cfg) if cfg.do_train else cfg)
    return 0


def trained_model_config(cfg: Config) -> Config:
    """The config that loads what this training wrote: its LoRA adapter on the base model, or (full, freeze) the
    saved model itself."""
    if cfg.finetuning_type in ("lora", "oft"):
        return replace(cfg, adapter_name_or_path=cfg.output_dir, resume_from_checkpoint=None)
    return replace(
        cfg, model_name_or_path=cfg.output_dir, adapter_name_or_path=None, resume_from_checkpoint=None
    )

"""Training-throughput benchmark: tuneboard (and, with --llamafactory, LLaMA-Factory 0.9.5) fine-tuning the same
model on the same data files with the same YAML, on the CPU. See bench/README.md ("Training throughput").

    .venv/bin/python bench/train_throughput.py                                  # tuneboard, padded + padding-free
    .venv/bin/python bench/train_throughput.py --llamafactory /tmp/lf-venv --repeat 3 --threads 2
    .venv/bin/python bench/train_throughput.py --variants padding_free --bf16

Default setting (the issue's): a 27M-parameter Qwen2-architecture model written by `tuneboard model tiny`
(hidden 512, 8 layers, vocabulary 8,000), 300 generated Chinese Alpaca records + the bundled identity.json
(filled with a name), template qwen, cutoff_len 512, batch 4, 1 epoch, LoRA rank 8 on all linear layers,
learning rate 1e-4 (cosine), seed 42, fp32. Each run is a separate process (one per tool and variant, in turn:
A B C A B C ...); its figures come from the batches it actually trained on and from the Trainer's own
`train_runtime` (the training loop: no imports, no model load, no tokenization).

Printed per run and as medians: trained tokens/s (label-carrying positions), tokens/s (real tokens, padding
excluded), samples/s, padding fraction (padding slots / all slots), peak RSS of the process, MFU and the
training loss. MFU = 6 * N * tokens/s / peak, N = all parameters (frozen + LoRA), tokens = real tokens, peak =
the fp32 2048x2048 matmul rate measured here with the same thread count (best of several, before and after).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
NAME = "alpaca_zh_bench"

# --------------------------------------------------------------------------------------------- data


def zh_record(rng) -> dict:
    """A Chinese Alpaca record shaped like alpaca_zh_demo: a short instruction, an input in a third of the
    records, and an output longer than the prompt (about 100-400 tokens in all with the bench tokenizer)."""
    from preprocess import ZH_INSTR, ZH_TOPICS, lognormal_chars, sentence, text_of

    instruction = rng.choice(ZH_INSTR).format(t=rng.choice(ZH_TOPICS), n=rng.randint(3, 7))
    if rng.random() < 0.3:
        instruction += sentence(rng, True)
    has_input = rng.random() < 0.35
    return {
        "instruction": instruction,
        "input": text_of(rng, True, lognormal_chars(rng, 90, 0.6, 20, 500)) if has_input else "",
        "output": text_of(rng, True, lognormal_chars(rng, 270, 0.55, 40, 1600)),
    }


def write_data(root: Path, n: int, seed: int) -> Path:
    """`alpaca_zh_bench` (n generated records) and `identity` (the bundled file, filled) + dataset_info.json."""
    import random

    sys.path.insert(0, str(BENCH))
    rng = random.Random(seed)
    records = [zh_record(rng) for _ in range(n)]
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{NAME}.json").write_text(json.dumps(records, ensure_ascii=False, indent=1), encoding="utf-8")
    identity = (ROOT / "data" / "identity.json").read_text(encoding="utf-8")
    identity = identity.replace("{{name}}", "小调").replace("{{author}}", "tuneboard")
    (root / "identity.json").write_text(identity, encoding="utf-8")
    info = {NAME: {"file_name": f"{NAME}.json"}, "identity": {"file_name": "identity.json"}}
    (root / "dataset_info.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return root


def ensure_model(workdir: Path, hidden: int, layers: int, vocab: int) -> Path:
    out = workdir / f"model-h{hidden}-l{layers}-v{vocab}"
    if not (out / "config.json").exists():
        tmp = out.with_name(out.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        cmd = [sys.executable, "-m", "tuneboard", "model", "tiny", str(tmp), "--hidden-size", str(hidden)]
        cmd += ["--layers", str(layers), "--vocab-size", str(vocab)]
        subprocess.run(
            cmd, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(ROOT / "src")}
        )
        os.replace(tmp, out)
    return out


# --------------------------------------------------------------------------------------------- config


def train_config(a: argparse.Namespace, model: Path, data: Path, out: Path) -> dict:
    """One YAML for both tools (LLaMA-Factory's keys; tuneboard accepts them unchanged)."""
    return {
        "model_name_or_path": str(model),
        "trust_remote_code": False,
        "stage": "sft",
        "do_train": True,
        "finetuning_type": "lora",
        "lora_target": "all",
        "lora_rank": a.lora_rank,
        "dataset_dir": str(data),
        "dataset": f"{NAME},identity",
        "template": a.template,
        "cutoff_len": a.cutoff_len,
        "overwrite_cache": True,
        "preprocessing_num_workers": None,
        "dataloader_num_workers": 0,
        "output_dir": str(out),
        "overwrite_output_dir": True,
        "logging_steps": 10,
        "save_strategy": "no",
        "plot_loss": False,
        "report_to": "none",
        "per_device_train_batch_size": a.batch_size,
        "gradient_accumulation_steps": 1,
        "learning_rate": a.learning_rate,
        "num_train_epochs": a.epochs,
        "max_steps": a.max_steps,
        "lr_scheduler_type": "cosine",
        "warmup_ratio": 0.0,
        "bf16": a.bf16,
        "fp16": False,
        "use_cpu": True,
        "seed": a.seed,
        "ddp_timeout": 180000000,
    }


def write_yaml(path: Path, cfg: dict) -> None:
    import yaml

    path.write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True), encoding="utf-8")


# --------------------------------------------------------------------------------------------- child side
# Runs inside the tool's own Python (tuneboard's venv, or LLaMA-Factory's): stdlib + the tool only.


def _instrument(collator_cls, stats: dict) -> None:
    """Count every batch the collator makes: slots (padding included), real tokens, labelled positions."""
    orig = collator_cls.__call__

    def call(self, features):
        b = orig(self, features)
        ids, mask = b["input_ids"], b.get("attention_mask")
        stats["batches"] += 1
        stats["slots"] += ids.numel()
        stats["tokens"] += int(mask.sum()) if mask is not None and mask.dim() == 2 else ids.numel()
        stats["labelled"] += int((b["labels"][:, 1:] != -100).sum())
        return b

    collator_cls.__call__ = call


def _capture_train(stats: dict) -> None:
    import transformers

    orig = transformers.Trainer.train

    def train(self, *args, **kwargs):
        t, c = time.perf_counter(), time.process_time()
        output = orig(self, *args, **kwargs)
        stats["train_wall_s"] = time.perf_counter() - t
        stats["train_cpu_s"] = time.process_time() - c  # all threads of the process
        stats["metrics"] = dict(output.metrics)
        stats["params"] = sum(p.numel() for p in self.model.parameters())
        stats["trainable"] = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        stats["losses"] = [h["loss"] for h in self.state.log_history if "loss" in h]
        gc = getattr(self.model, "is_activation_checkpointing", None)  # transformers >= 5.2x
        stats["gradient_checkpointing"] = bool(
            gc if gc is not None else getattr(self.model, "is_gradient_checkpointing", False)
        )
        return output

    transformers.Trainer.train = train


def child(tool: str, cfg_path: str, out_path: str) -> int:
    import yaml

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # LLaMA-Factory with tuneboard's allocator setting, to show what that setting alone does
    if tool == "lf+thp":
        os.environ["THP_MEM_ALLOC_ENABLE"] = "1"
        tool = "lf"
    if tool == "tb":  # what the `tuneboard` command sets before torch is imported
        sys.path.insert(0, str(ROOT / "src"))
        from tuneboard.cli.main import process_defaults

        process_defaults()
    stats = {"batches": 0, "slots": 0, "tokens": 0, "labelled": 0}
    cfg = yaml.safe_load(Path(cfg_path).read_text(encoding="utf-8"))
    _capture_train(stats)
    if tool == "lf":
        from llamafactory.data.collator import SFTDataCollatorWith4DAttentionMask
        from llamafactory.train.tuner import run_exp

        _instrument(SFTDataCollatorWith4DAttentionMask, stats)
        run_exp(cfg)
    else:
        from tuneboard import config
        from tuneboard.data import collate
        from tuneboard.train import workflow as train

        _instrument(collate.PadCollator, stats)
        _instrument(collate.PaddingFreeCollator, stats)
        train.run(config.from_dict(cfg, cfg_path)[0])
    Path(out_path).write_text(json.dumps(stats))
    return 0


# --------------------------------------------------------------------------------------------- parent side


def matmul_peak(threads: int, n: int = 2048, seconds: float = 3.0) -> float:
    """fp32 n x n matmul rate, GFLOP/s: the best 5-matmul window within `seconds`."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best, end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        for _ in range(5):
            torch.mm(a, b)
        best = max(best, 5 * 2 * n**3 / (time.perf_counter() - t) / 1e9)
    return best


def run_one(python: str, tool: str, cfg: dict, workdir: Path, tag: str, env: dict) -> dict:
    cfg_path, out_path, log_path = (workdir / f"{tag}{ext}" for ext in (".yaml", ".json", ".log"))
    write_yaml(cfg_path, cfg)
    out_path.unlink(missing_ok=True)
    cmd = [python, str(Path(__file__).resolve()), "--child", tool, str(cfg_path), str(out_path)]
    t = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=workdir)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t
    if proc.returncode or not out_path.exists():
        tail = log_path.read_text(errors="replace")[-3000:]
        raise SystemExit(f"{tag}: exit {proc.returncode}; log {log_path}:\n{tail}")
    s = json.loads(out_path.read_text())
    m = s["metrics"]
    rt = m["train_runtime"]
    return {
        "tag": tag,
        "runtime_s": rt,
        "process_wall_s": wall,
        "samples_per_s": m.get("train_samples_per_second"),
        "tokens_per_s": s["tokens"] / rt,
        "trained_tokens_per_s": s["labelled"] / rt,
        "trained_tokens_per_cpu_s": s["labelled"] / s["train_cpu_s"],
        "padding_fraction": 1 - s["tokens"] / s["slots"],
        "peak_rss_mb": usage.ru_maxrss / 1024,  # Linux: kilobytes
        "train_loss": m.get("train_loss"),
        "last_logged_loss": s["losses"][-1] if s["losses"] else None,
        "params": s["params"],
        "trainable": s["trainable"],
        "tokens": s["tokens"],
        "labelled": s["labelled"],
        "slots": s["slots"],
        "batches": s["batches"],
        "gradient_checkpointing": s["gradient_checkpointing"],
        "warnings": [ln for ln in log_path.read_text(errors="replace").splitlines() if "bf16" in ln][:3],
    }


def fmt_row(name: str, r: dict, peak: float) -> str:
    mfu = 6 * r["params"] * r["tokens_per_s"] / (peak * 1e9)
    return (
        f"{name:<22} {r['trained_tokens_per_s']:8.0f} {r['tokens_per_s']:8.0f} {r['samples_per_s']:6.2f} "
        f"{100 * r['padding_fraction']:6.1f}% {r['peak_rss_mb']:7.0f} {100 * mfu:5.1f}% "
        f"{r['train_loss']:7.4f} {r['last_logged_loss'] or float('nan'):7.4f} {r['runtime_s']:7.1f}"
    )


HEADER = (
    f"{'run':<22} {'trained':>8} {'tokens':>8} {'smp/s':>6} {'pad':>7} {'RSS MB':>7} {'MFU':>6} "
    f"{'loss':>7} {'last':>7} {'time s':>7}\n{'':<22} {'tok/s':>8} {'tok/s':>8}"
)


def summarize(results: dict[str, list[dict]], peak: float, peaks: list[float], rounds: int) -> None:
    def median(name: str, key: str) -> float:
        return statistics.median(r[key] for r in results[name])

    print(
        f"\nmedians over {rounds} round(s); matmul peak {peak:.1f} GFLOP/s (best of {len(peaks)} measurements, "
        f"median {statistics.median(peaks):.1f})"
    )
    print(HEADER)
    for name in results:
        keys = ("trained_tokens_per_s", "tokens_per_s", "samples_per_s", "padding_fraction", "peak_rss_mb")
        med = {k: median(name, k) for k in (*keys, "train_loss", "runtime_s")}
        last = [r["last_logged_loss"] for r in results[name] if r["last_logged_loss"] is not None]
        med["last_logged_loss"] = statistics.median(last) if last else None
        med["params"] = results[name][0]["params"]
        print(fmt_row(name, med, peak), f" {median(name, 'trained_tokens_per_cpu_s'):.0f} trained tok/CPU-s")
    first = next(iter(results.values()))[0]
    load = os.getloadavg()
    print(
        f"\nN = {first['params'] / 1e6:.2f}M parameters ({first['trainable'] / 1e6:.3f}M trainable); "
        f"{first['tokens']} tokens, {first['labelled']} labelled, {first['batches']} batches per epoch "
        f"({next(iter(results))}); load average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    lf = "LLaMA-Factory 0.9.5"
    if lf not in results:
        return
    r0 = results[lf][0]
    print(
        f"LLaMA-Factory: {r0['tokens']} tokens, {r0['labelled']} labelled, gradient checkpointing "
        f"{'on' if r0['gradient_checkpointing'] else 'off'}"
    )
    for name in results:
        if name == lf:
            continue
        pairs = list(zip(results[name], results[lf], strict=False))

        def ratio(key: str, pairs=pairs) -> float:
            return statistics.median(t[key] / b[key] for t, b in pairs)

        print(
            f"{name} / LLaMA-Factory (median of {len(pairs)} pairs): trained tokens/s x{ratio('trained_tokens_per_s'):.2f}, "
            f"tokens/s x{ratio('tokens_per_s'):.2f}, per CPU-second x{ratio('trained_tokens_per_cpu_s'):.2f}, "
            f"train_loss {100 * (ratio('train_loss') - 1):+.1f}%, peak RSS x{ratio('peak_rss_mb'):.2f}"
        )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        return child(*argv[1:4])
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="model directory (default: `tuneboard model tiny` at the size below)")
    ap.add_argument("--hidden-size", type=int, default=512)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--vocab-size", type=int, default=8000)
    ap.add_argument("--dataset-dir", help="data written earlier (default: generate into the work dir)")
    ap.add_argument("--records", type=int, default=300, help="generated Alpaca records (+ identity's 91)")
    ap.add_argument("--cutoff-len", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--max-steps", type=int, default=-1, help="stop after this many steps (-1: the epochs)")
    ap.add_argument("--learning-rate", type=float, default=1e-4)
    ap.add_argument("--lora-rank", type=int, default=8)
    ap.add_argument("--template", default="qwen", help="a template name both tools know (chatml for SmolLM2)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--bf16", action="store_true", help="bf16: true for every run")
    ap.add_argument(
        "--variants",
        default="padded,padding_free",
        help="tuneboard runs, comma-separated: padded, padding_free, each optionally with +gc (gradient "
        "checkpointing, as LLaMA-Factory does by default) and +unfused (fused_ops: false); none: only LLaMA-Factory",
    )
    ap.add_argument("--llamafactory", metavar="VENV", help="also run LLaMA-Factory from this virtual env")
    ap.add_argument(
        "--lf-thp",
        action="store_true",
        help="also run LLaMA-Factory with THP_MEM_ALLOC_ENABLE=1, the allocator setting tuneboard makes",
    )
    ap.add_argument("--repeat", type=int, default=1, help="rounds; each round runs every variant once")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="OMP/MKL threads for every run")
    ap.add_argument("--workdir", default="/tmp/tb-train-bench", help="model, data, configs, logs, outputs")
    ap.add_argument("--json", action="store_true", help="also print every run as a JSON line")
    a = ap.parse_args(argv)

    work = Path(a.workdir)
    work.mkdir(parents=True, exist_ok=True)
    model = Path(a.model) if a.model else ensure_model(work, a.hidden_size, a.layers, a.vocab_size)
    data = Path(a.dataset_dir) if a.dataset_dir else write_data(work / "data", a.records, 0)
    threads = str(a.threads)
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "HF_HUB_OFFLINE": "1"}
    env.update(TOKENIZERS_PARALLELISM="false", DISABLE_VERSION_CHECK="1")
    runs: list[tuple[str, str, str, dict]] = []  # (name, python, tool, config overrides)
    for v in [v for v in a.variants.split(",") if v]:
        batching, *extras = v.split("+")
        if batching not in ("padded", "padding_free") or not set(extras) <= {"gc", "unfused"}:
            raise SystemExit(f"--variants: unknown '{v}' (padded or padding_free, with +gc and/or +unfused)")
        overrides = {
            "padding_free": batching == "padding_free",
            "gradient_checkpointing": "gc" in extras,
            "fused_ops": "unfused" not in extras,
        }
        runs.append((f"tuneboard {v}", sys.executable, "tb", overrides))
    if a.llamafactory:
        runs.append(("LLaMA-Factory 0.9.5", str(Path(a.llamafactory) / "bin" / "python"), "lf", {}))
        if a.lf_thp:
            runs.append(
                ("LLaMA-Factory 0.9.5 +THP", str(Path(a.llamafactory) / "bin" / "python"), "lf+thp", {})
            )
    if not runs:
        raise SystemExit("nothing to run")

    peaks = [matmul_peak(a.threads)]
    load0 = os.getloadavg()
    print(
        f"model {model}\ndata  {data}\nthreads {threads}, load average {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}"
    )
    print(f"fp32 matmul peak (2048x2048, {threads} threads): {peaks[0]:.1f} GFLOP/s\n")
    results: dict[str, list[dict]] = {name: [] for name, *_ in runs}
    print(HEADER)
    for rep in range(a.repeat):
        for name, python, tool, extra in runs:
            slug = name.split()[0].lower() + (
                "-" + name.split()[1] if tool == "tb" else tool[2:].replace("+", "-")
            )
            cfg = {**train_config(a, model, data, work / "out" / slug), **extra}
            peaks.append(matmul_peak(a.threads, seconds=2.0))
            r = run_one(python, tool, cfg, work, f"{slug}-{rep}", env)
            r["load1"], r["peak_before"] = os.getloadavg()[0], peaks[-1]
            results[name].append(r)
            print(fmt_row(f"{name} #{rep + 1}", r, max(peaks)), f" load {r['load1']:.1f}", flush=True)
            for w in r["warnings"]:
                print(f"    {w.strip()[:160]}")
            if a.json:
                print(json.dumps({"name": name, "rep": rep, **r}), flush=True)
    peaks.append(matmul_peak(a.threads))
    summarize(results, max(peaks), peaks, a.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())

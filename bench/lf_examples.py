#!/usr/bin/env python
"""Run LLaMA-Factory's own text-only example configs through `tuneboard train` on a tiny model (issue 17).

  python bench/lf_examples.py LF_EXAMPLES [--model builtin:tiny] [--steps 2] [--only NAME,...] [--timeout 300]

LF_EXAMPLES is LLaMA-Factory's `examples/` directory, or a git directory of the LLaMA-Factory repository (as the
`fetch` tool gives), read at HEAD. Only the configs in train_lora/, train_full/ and extras/ are taken; the
multimodal ones and those of the stage tuneboard does not run yet (ppo) are skipped and listed.

Each config is changed in these keys only: model_name_or_path (the tiny model), adapter_name_or_path (the adapter
of the first LoRA run, for predict configs), dataset / eval_dataset / dataset_dir (the bundled `identity`
dataset; the preference pairs `dpo_zh_demo` for stages dpo and rm, the tagged replies `kto_zh_demo` for kto, the
text `pt_zh_demo` for pt), output_dir and tokenized_path (inside a scratch directory, the working directory of the run, where
the DeepSpeed JSON a config names is copied from LF's examples/deepspeed), and the sizes (max_steps, cutoff_len,
batch 1, no gradient accumulation, max_samples, freeze_trainable_layers
at most 2 of the tiny model's 4 layers). Every run is classified:
  ran      `tuneboard train` exited 0
  refused  it stopped with one clean `error:` line and no traceback (the line is printed)
  crashed  anything else (the last lines are printed)
LF's YAML files are read, never copied into this repository.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = ("train_lora", "train_full", "extras")
MULTIMODAL = ("vl", "llava", "mossvl", "qwen2_5vl", "qwen3vl", "mllm", "video", "audio")
STAGES = ("ppo",)  # stages tuneboard does not run yet (dpo, kto, rm and pt it does)
DEMO_DATA = {
    "dpo": "dpo_zh_demo",
    "rm": "dpo_zh_demo",
    "kto": "kto_zh_demo",
    "pt": "pt_zh_demo",
}  # else identity


def listing(source: Path) -> dict[str, str]:
    """name -> YAML text of every .yaml under the three folders."""
    out = {}
    if (source / "HEAD").exists() and (source / "objects").exists():  # a git directory
        git = ["git", "--git-dir", str(source)]
        names = subprocess.run(
            [*git, "ls-tree", "-r", "--name-only", "HEAD", "examples/"], capture_output=True, text=True
        ).stdout.split()
        for name in names:
            rel = name.removeprefix("examples/")
            if rel.split("/")[0] in FOLDERS and rel.endswith(".yaml"):
                out[rel] = subprocess.run(
                    [*git, "show", f"HEAD:{name}"], capture_output=True, text=True
                ).stdout
    else:
        for folder in FOLDERS:
            for path in sorted((source / folder).rglob("*.yaml")):
                out[str(path.relative_to(source))] = path.read_text(encoding="utf-8")
    return dict(sorted(out.items()))


def support_file(source: Path, rel: str, work: Path) -> None:
    """Put a file a config names relative to LF's root (examples/deepspeed/*.json) under the scratch dir."""
    target = work / rel
    if target.exists() or not rel.startswith("examples/"):
        return
    if (source / "HEAD").exists() and (source / "objects").exists():
        proc = subprocess.run(["git", "--git-dir", str(source), "show", f"HEAD:{rel}"], capture_output=True)
        data = proc.stdout if proc.returncode == 0 else None
    else:
        path = source / rel.removeprefix("examples/")
        data = path.read_bytes() if path.exists() else None
    if data is not None:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


def why_skipped(name: str, cfg: object) -> str | None:
    low = name.lower()
    if not isinstance(cfg, dict) or "model_name_or_path" not in cfg:
        return "not a training config"
    if any(m in low for m in MULTIMODAL) or cfg.get("image_max_pixels") or cfg.get("freeze_vision_tower"):
        return "multimodal"
    stage = str(cfg.get("stage", "sft"))
    if stage not in ("sft", *DEMO_DATA) or any(s in Path(low).stem.split("_") for s in STAGES):
        return f"stage {stage} (stages issue)"
    return None


def swapped(cfg: dict, model: str, work: Path, name: str, adapter: str | None, steps: int) -> dict:
    cfg = dict(cfg)
    cfg["model_name_or_path"] = model
    if "adapter_name_or_path" in cfg:
        if adapter:
            cfg["adapter_name_or_path"] = adapter
        else:
            cfg.pop("adapter_name_or_path")
    for key in ("dataset", "eval_dataset"):
        if key in cfg:
            cfg[key] = DEMO_DATA.get(str(cfg.get("stage")), "identity")
    cfg["dataset_dir"] = str(ROOT / "data")
    cfg["output_dir"] = str(work / "out" / name)
    if "tokenized_path" in cfg:
        cfg["tokenized_path"] = str(work / "tokenized" / name)
    cfg.update(cutoff_len=64, per_device_train_batch_size=1, gradient_accumulation_steps=1, max_samples=8)
    if "per_device_eval_batch_size" in cfg:
        cfg["per_device_eval_batch_size"] = 1
    if isinstance(cfg.get("freeze_trainable_layers"), int):  # a size: the tiny model has 4 layers
        cfg["freeze_trainable_layers"] = max(-2, min(2, cfg["freeze_trainable_layers"]))
    if not cfg.get("do_predict"):
        cfg["max_steps"] = steps
    return cfg


def classify(proc: subprocess.CompletedProcess) -> tuple[str, str]:
    err = (proc.stderr or "").strip().splitlines()
    if proc.returncode == 0:
        return "ran", ""
    if err and "Traceback" not in proc.stderr and err[-1].startswith("error:"):
        return "refused", err[-1]
    return "crashed", " | ".join(err[-3:])[-400:]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("examples", type=Path)
    ap.add_argument("--model", default="builtin:tiny")
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--only", default="", help="comma-separated substrings of config names")
    ap.add_argument("--timeout", type=int, default=300)
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lf-examples-"))
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    rows, skipped, adapter = [], [], None
    configs = [(name, yaml.safe_load(text)) for name, text in listing(a.examples).items()]
    configs.sort(key=lambda item: isinstance(item[1], dict) and "adapter_name_or_path" in item[1])
    for name, cfg in configs:
        reason = why_skipped(name, cfg)
        if reason:
            skipped.append((name, reason))
            continue
        if a.only and not any(s in name for s in a.only.split(",")):
            continue
        if isinstance(cfg.get("deepspeed"), str):
            support_file(a.examples, cfg["deepspeed"], work)
        tag = name.removesuffix(".yaml").replace("/", "-")
        path = work / f"{tag}.yaml"
        path.write_text(yaml.safe_dump(swapped(cfg, a.model, work, tag, adapter, a.steps)), encoding="utf-8")
        cmd = [sys.executable, "-m", "tuneboard", "train", str(path)]
        try:
            proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=a.timeout)
            verdict, line = classify(proc)
        except subprocess.TimeoutExpired:
            verdict, line = "crashed", f"timed out after {a.timeout} s"
        if verdict == "ran" and adapter is None and cfg.get("finetuning_type") == "lora":
            adapter = str(work / "out" / tag)
        rows.append((name, verdict, line))
        print(f"{verdict:8} {name}  {line}", flush=True)
    print("\nskipped:")
    for name, reason in skipped:
        print(f"  {name}: {reason}")
    print(f"\n{'config':48} result")
    for name, verdict, line in rows:
        print(f"{name:48} {verdict}{'  ' + line if line else ''}")
    count = {v: sum(r[1] == v for r in rows) for v in ("ran", "refused", "crashed")}
    print(
        f"\n{count['ran']} ran, {count['refused']} refused cleanly, {count['crashed']} crashed, of {len(rows)}"
    )
    print(f"scratch: {work}")


if __name__ == "__main__":
    main()

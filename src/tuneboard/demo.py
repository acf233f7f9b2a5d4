"""`make demo`: the tutorial end to end on `builtin:tiny` and the bundled data, on CPU, in a few minutes.

Interface layer: runs the same `tuneboard` commands a user would type, in a fresh `demo_output/` workspace.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

from . import rundir
from .cli.main import main as tuneboard
from .model.tiny import bundled_data_dir

NAME, AUTHOR = "小调 (Tuney)", "tuneboard"
TRAIN_YAML = """\
### model
model_name_or_path: builtin:tiny

### method
stage: sft
do_train: true
finetuning_type: full

### dataset
dataset: identity,triage_train
template: chatml
cutoff_len: 256

### output
output_dir: {out}/saves/tiny-full
logging_steps: 10
save_steps: 1000
save_total_limit: 1
plot_loss: true
overwrite_output_dir: true

### train
# builtin:tiny starts from random weights: at 3e-3 it often stalls at the class prior on triage
per_device_train_batch_size: 8
learning_rate: 5.0e-4
weight_decay: 0.1
num_train_epochs: 10
lr_scheduler_type: cosine
warmup_ratio: 0.05
seed: 42
"""


def step(title: str, argv: list[str]) -> None:
    print(f"\n=== {title}\n$ tuneboard {' '.join(argv)}", flush=True)
    code = tuneboard(argv)
    if code != 0:
        print(f"demo: step failed with exit code {code}", file=sys.stderr)
        sys.exit(code)


MARKER = ".tuneboard-demo"  # written into the output directory: a later run may replace it
DEMO_ENTRIES = {MARKER, "data", "train.yaml", "saves", "eval", "export"}


def refusal(root: Path, force: bool = False) -> str | None:
    """Why the demo must not replace `root`: it is the current directory (or holds it), or (unless `force`)
    it holds something other than a previous demo run (a user's folder: the demo starts by deleting it)."""
    real, here = root.resolve(), Path.cwd().resolve()
    if real == here or real in here.parents:
        return f"{root} is the current directory or holds it; name a new directory, e.g. demo_output"
    if root.exists() and not root.is_dir():
        return f"{root} exists and is not a directory"
    if force:
        return None
    entries = set(os.listdir(root)) if root.is_dir() else set()
    train_yaml = root / "train.yaml"
    previous = (root / MARKER).exists() or (
        train_yaml.is_file()
        and train_yaml.read_text(encoding="utf-8").startswith(TRAIN_YAML.split("\n\n")[0])
    )
    if entries and not (entries <= DEMO_ENTRIES and previous):
        return f"{root} is not empty and not a previous demo run; the demo would delete it (--force to allow)"
    return None


def main(out: str = "demo_output", force: bool = False) -> int:
    start = time.time()
    root = Path(out)
    why = refusal(root, force)
    if why:
        print(f"demo: {why}", file=sys.stderr)
        return 1
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    (root / MARKER).write_text("a `python -m tuneboard.demo` run; the next run replaces this directory\n")
    data = root / "data"
    shutil.copytree(bundled_data_dir(), data, ignore=shutil.ignore_patterns("*.template.json", "README.md"))
    config = root / "train.yaml"
    config.write_text(TRAIN_YAML.format(out=root), encoding="utf-8")
    run_dir = root / "saves" / "tiny-full"
    common = [f"dataset_dir={data}"]

    step(
        "1. fill the identity data",
        ["data", "identity", "--name", NAME, "--author", AUTHOR, "--file", str(data / "identity.json")],
    )
    step(
        "2. check the triage dataset",
        [
            "data",
            "check",
            "triage_train",
            "--dataset-dir",
            str(data),
            "--model",
            "builtin:tiny",
            "--cutoff-len",
            "256",
        ],
    )
    step("3. train (full fine-tuning of builtin:tiny)", ["train", str(config), *common])
    step(
        "4. evaluate on the triage test split",
        [
            "eval",
            str(config),
            *common,
            f"model_name_or_path={run_dir}",
            "eval_dataset=triage_test",
            f"output_dir={root / 'eval'}",
            "max_new_tokens=8",
            "per_device_eval_batch_size=32",
        ],
    )
    print("\n=== 5. chat with the trained model", flush=True)
    from .config import Config
    from .inference.hf import ChatEngine

    engine = ChatEngine(Config(model_name_or_path=str(run_dir), max_new_tokens=64, do_sample=False))
    test = json.loads((data / "triage_test.json").read_text(encoding="utf-8"))[0]
    for question, system in (("你是谁？", None), (f"{test['instruction']}\n{test['input']}", test["system"])):
        reply = engine.chat([{"role": "user", "content": question}], system=system)
        print(f"User: {question}\nAssistant: {reply.text}\n")
    print(f"(expected answer for the triage question: {test['output']})")
    step(
        "6. export a standard model directory",
        [
            "export",
            str(config),
            f"model_name_or_path={run_dir}",
            f"export_dir={root / 'export'}",
            "overwrite_export_dir=true",
        ],
    )
    results = json.loads(rundir.predict_results_path(root / "eval").read_text())
    print(f"\n=== done in {time.time() - start:.0f}s")
    print(f"triage test accuracy: {results['predict_accuracy']:.1f}% on {results['predict_samples']} records")
    print(f"trained model:   {run_dir}  (loss plot: {rundir.plot_path(run_dir)})")
    print(f"predictions:     {rundir.predictions_path(root / 'eval')}")
    print(
        f"exported model:  {root / 'export'}  (load it with transformers, or `ollama create` with its Modelfile)"
    )
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m tuneboard.demo", description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", default="demo_output", help="a new directory, or a previous run's")
    parser.add_argument("--force", action="store_true", help="replace OUT even if it holds other files")
    args = parser.parse_args()
    sys.exit(main(args.out, args.force))

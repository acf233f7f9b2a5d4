"""Data parallelism on the CPU (gloo): 2 processes x batch 2 give the per-step losses of 1 process x batch 4,
rank 0 alone writes the outputs, and a 2-process run resumes from its checkpoint to the same losses.

`nproc_per_node=2` makes `tuneboard train` start torchrun itself, so the launcher is tested too. The same global
batch holds the same samples: both runs draw one seeded permutation, and accelerate hands consecutive
per-device batches of it to the ranks in turn (batch [p0 p1 p2 p3] = rank 0's [p0 p1] + rank 1's [p2 p3])."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import read_log, write_yaml

pytestmark = pytest.mark.slow
STEPS = 6


def config(workspace: Path) -> Path:
    keys = dict(
        model_name_or_path="builtin:tiny",
        finetuning_type="lora",
        dataset="identity,triage_train",
        dataset_dir=str(workspace / "data"),
        max_samples=40,  # 80 samples: 6 steps of 4 stay inside the first epoch
        cutoff_len=128,
        learning_rate=2e-3,
        lr_scheduler_type="constant",
        max_steps=STEPS,
        logging_steps=1,
        save_steps=3,
        seed=3,
    )
    return write_yaml(workspace / "ddp.yaml", **keys)


def start(cfg: Path, *overrides: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("LOCAL_RANK", "WORLD_SIZE", "RANK")}
    env.update(OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    cmd = [sys.executable, "-m", "tuneboard", "train", str(cfg), *overrides]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def finish(proc: subprocess.Popen) -> str:
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-4000:]
    return out


def losses(run: Path) -> dict[int, float]:
    steps = [rec for rec in read_log(run) if "loss" in rec]
    assert len(steps) == len({r["step"] for r in steps}), "a step was logged twice (more than rank 0 writes)"
    return {r["step"]: r["loss"] for r in steps}


@pytest.fixture(scope="module")
def runs(workspace) -> dict[str, Path]:
    cfg = config(workspace)
    out = {name: workspace / "saves" / f"ddp-{name}" for name in ("one", "two")}
    procs = [  # at the same time: the machine has 2 cores and each process uses 1 thread
        start(cfg, f"output_dir={out['one']}", "per_device_train_batch_size=4"),
        start(cfg, f"output_dir={out['two']}", "per_device_train_batch_size=2", "nproc_per_node=2"),
    ]
    outputs = [finish(p) for p in procs]
    assert "launching 2 training processes" in outputs[1]
    assert "2 x 1 accumulation x 2 process(es) = 4 samples per step" in outputs[1]
    assert outputs[1].count("done in") == 1  # one report, from rank 0
    return out


def test_two_processes_give_the_losses_of_one(runs):
    one, two = losses(runs["one"]), losses(runs["two"])
    assert sorted(one) == sorted(two) == list(range(1, STEPS + 1))
    diffs = {step: abs(one[step] - two[step]) for step in one}
    assert max(diffs.values()) < 1e-5, diffs
    assert len(set(one.values())) == STEPS  # the losses move: the comparison is not trivially equal


def test_logged_tokens_count_every_process(runs):
    """The same samples per step in both runs: the cumulative tokens (padding excluded) in trainer_log.jsonl
    and the final tokens/s agree, so the 2-process figures are not rank 0's half."""

    def tokens(run):
        return {r["step"]: r["tokens"] for r in read_log(run) if "loss" in r}

    one, two = tokens(runs["one"]), tokens(runs["two"])
    assert one == two and one[1] > 0 and one[STEPS] > one[1]
    results = {name: json.loads((runs[name] / "all_results.json").read_text()) for name in runs}
    per_second = {name: r["train_tokens_per_second"] * r["train_runtime"] for name, r in results.items()}
    assert abs(per_second["one"] - per_second["two"]) < 1e-3 * per_second["one"] + 1


def test_rank_zero_writes_the_outputs(runs):
    run = runs["two"]
    results = json.loads((run / "all_results.json").read_text())
    assert results["global_step"] == STEPS
    single = json.loads((runs["one"] / "all_results.json").read_text())
    assert abs(results["train_loss"] - single["train_loss"]) < 1e-5
    assert (run / "adapter_model.safetensors").exists() and (run / "tuneboard_config.yaml").exists()
    ckpt = run / "checkpoint-3"
    assert {"rng_state_0.pth", "rng_state_1.pth", "trainer_state.json"} <= {p.name for p in ckpt.iterdir()}
    assert not list(run.glob(".*partial*"))


def test_two_process_run_resumes_to_the_same_losses(runs, workspace):
    resumed = workspace / "saves" / "ddp-resumed"
    ckpt = runs["two"] / "checkpoint-3"
    finish(
        start(
            config(workspace),
            f"output_dir={resumed}",
            "per_device_train_batch_size=2",
            "nproc_per_node=2",
            f"resume_from_checkpoint={ckpt}",
        )
    )
    expected, got = losses(runs["two"]), losses(resumed)
    assert sorted(got) == list(range(4, STEPS + 1))
    for step in got:
        assert abs(got[step] - expected[step]) < 1e-5, (step, got[step], expected[step])

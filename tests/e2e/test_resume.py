"""Kill a run with SIGKILL after a checkpoint, or in the middle of writing one, resume it, and get the
uninterrupted run's per-step losses. Ctrl-C (SIGINT) saves a checkpoint and exits cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import read_log, write_yaml

pytestmark = pytest.mark.slow


def config(workspace: Path, name: str, **extra) -> Path:
    keys = dict(
        model_name_or_path="builtin:tiny",
        finetuning_type="lora",
        dataset="identity,triage_train",
        dataset_dir=str(workspace / "data"),
        max_samples=60,
        cutoff_len=128,
        output_dir=str(workspace / "saves" / name),
        per_device_train_batch_size=2,
        gradient_accumulation_steps=2,
        learning_rate=2e-3,
        max_steps=30,
        logging_steps=1,
        save_steps=5,
        seed=7,
    )
    keys.update(extra)
    return write_yaml(workspace / f"{name}.yaml", **keys)


def start(cfg: Path, *overrides: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "tuneboard", "train", str(cfg), *overrides]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 300) -> None:
    end = time.time() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.stdout.read()
        assert time.time() < end, f"timed out waiting for {path}"
        time.sleep(0.05)


def losses(run: Path) -> dict[int, float]:
    out = {}
    for rec in read_log(run):  # a resumed run re-logs the steps after its checkpoint: the last one wins
        if "loss" in rec:
            out[rec["step"]] = rec["loss"]
    return out


@pytest.fixture(scope="module")
def reference(workspace) -> dict[int, float]:
    """Per-step losses of the run left alone."""
    ref = start(config(workspace, "resume-ref"))
    assert ref.wait(600) == 0, ref.stdout.read()
    return losses(workspace / "saves" / "resume-ref")


def test_sigkill_then_resume_matches_uninterrupted_run(workspace, reference):
    cfg = config(workspace, "resume-killed")
    run = workspace / "saves" / "resume-killed"
    proc = start(cfg)
    wait_for(run / "checkpoint-10" / "trainer_state.json", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(60)
    assert not (run / "all_results.json").exists()  # it really was stopped before the end
    resumed = start(cfg, "resume_from_checkpoint=true")
    assert resumed.wait(600) == 0, resumed.stdout.read()

    expected, got = reference, losses(run)
    assert sorted(got) == sorted(expected) == list(range(1, 31))
    for step in expected:
        assert abs(got[step] - expected[step]) < 1e-5, (step, got[step], expected[step])


# `tuneboard train`, with the save of one checkpoint held up after its weights and optimizer are written
# (before trainer_state.json) so that the test can SIGKILL the run in the middle of that save
SLOW_SAVE = """
import sys, time
from pathlib import Path
from tuneboard.train import trainer
marker, step = Path(sys.argv[1]), int(sys.argv[2])
save_rng_state = trainer.BaseTrainer._save_rng_state
def held_up(self, output_dir):
    save_rng_state(self, output_dir)
    if self.state.global_step == step:
        marker.write_text(output_dir)
        time.sleep(600)
trainer.BaseTrainer._save_rng_state = held_up
from tuneboard.cli.main import main
sys.exit(main(sys.argv[3:]))
"""


def test_sigkill_during_a_checkpoint_save_resumes_from_the_previous_one(workspace, reference):
    from tuneboard.rundir import complete_checkpoints

    cfg = config(workspace, "killed-in-save", save_total_limit=2)
    run = workspace / "saves" / "killed-in-save"
    marker = workspace / "saving-step-10"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-c", SLOW_SAVE, str(marker), "10", "train", str(cfg)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    wait_for(marker, proc)
    partial = Path(marker.read_text())
    assert (partial / "optimizer.pt").exists() and not (partial / "trainer_state.json").exists()
    assert not (run / "checkpoint-10").exists()  # still under its temporary name
    proc.send_signal(signal.SIGKILL)
    proc.wait(60)
    assert complete_checkpoints(run) == [run / "checkpoint-5"]

    resumed = start(cfg, "resume_from_checkpoint=true")
    assert resumed.wait(600) == 0, resumed.stdout.read()
    got = losses(run)
    assert sorted(got) == sorted(reference) == list(range(1, 31))
    for step in reference:
        assert abs(got[step] - reference[step]) < 1e-5, (step, got[step], reference[step])
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-25", "checkpoint-30"]  # rotated
    assert not list(run.glob(".*partial*"))  # what the kill left was cleaned up


def test_ctrl_c_saves_a_checkpoint_and_says_how_to_resume(workspace):
    cfg = config(workspace, "interrupted", max_steps=2000, save_steps=1000)
    run = workspace / "saves" / "interrupted"
    proc = start(cfg)
    wait_for(run / "trainer_log.jsonl", proc)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    assert "resume_from_checkpoint=true" in out
    ckpts = list(run.glob("checkpoint-*"))
    assert len(ckpts) == 1 and (ckpts[0] / "trainer_state.json").exists()
    assert "Traceback" not in out

"""The progress record: the training callback writes it after every step on the main process, and the web
UI's progress bar reads exactly that (no console parsing)."""

from __future__ import annotations

import pytest
from transformers import TrainerControl, TrainerState

from tuneboard import rundir
from tuneboard.train import callbacks
from tuneboard.train.callbacks import ProgressWriter
from tuneboard.webui.runner import read_progress


@pytest.fixture
def clock(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(callbacks.time, "time", lambda: now[0])
    return now


def test_the_callback_writes_the_progress_the_web_ui_reads(tmp_path, clock):
    writer, control = ProgressWriter(str(tmp_path)), TrainerControl()
    state = TrainerState(max_steps=10, global_step=0, epoch=0.0, is_world_process_zero=True)
    writer.on_train_begin(None, state, control)
    assert read_progress(tmp_path) == {"step": 0, "total": 10, "remaining": None}  # no rate yet

    clock[0], state.global_step, state.epoch = 102.0, 1, 0.1
    writer.on_step_end(None, state, control)
    assert read_progress(tmp_path) == {"step": 1, "total": 10, "remaining": "00:18"}
    writer.on_log(None, state, control, logs={"loss": 2.5, "learning_rate": 1e-4, "grad_norm": 1.0})
    rec = rundir.read_progress(tmp_path)
    assert rec == {"step": 1, "max_steps": 10, "epoch": 0.1, "loss": 2.5, "learning_rate": 1e-4,
                   "elapsed": 2.0, "eta": 18.0, "time": 102.0}  # fmt: skip

    clock[0], state.global_step, state.epoch = 120.0, 10, 1.0
    writer.on_step_end(None, state, control)
    rec = rundir.read_progress(tmp_path)
    assert rec["step"] == 10 and rec["eta"] == 0 and rec["loss"] == 2.5  # the last logged loss stays
    assert read_progress(tmp_path) == {"step": 10, "total": 10, "remaining": "00:00"}


def test_a_resumed_run_times_only_its_own_steps(tmp_path, clock):
    writer, control = ProgressWriter(str(tmp_path)), TrainerControl()
    state = TrainerState(max_steps=100, global_step=50, is_world_process_zero=True)
    writer.on_train_begin(None, state, control)
    clock[0], state.global_step = 110.0, 60  # 10 steps in 10 s, 40 to go
    writer.on_step_end(None, state, control)
    assert read_progress(tmp_path) == {"step": 60, "total": 100, "remaining": "00:40"}


def test_only_the_main_process_writes(tmp_path, clock):
    writer = ProgressWriter(str(tmp_path))
    state = TrainerState(max_steps=10, global_step=1, is_world_process_zero=False)
    writer.on_train_begin(None, state, TrainerControl())
    writer.on_step_end(None, state, TrainerControl())
    assert not rundir.progress_path(tmp_path).exists()


def test_a_stop_during_start_up_exits_130_not_killed_by_sigint(tmp_path):
    """A SIGINT that lands inside `exec` of a string (dataclasses and transformers do that while importing) must
    not leave CPython's "exit by SIGINT" mark: `python -m tuneboard` would end with -2 although the CLI returned
    130. The module below is run the same way (`-m`, where the mark is honoured)."""
    import os
    import subprocess
    import sys

    (tmp_path / "startup.py").write_text(
        "import os, signal, sys\n"
        "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"  # as a web UI started in the background passes it
        "from tuneboard.cli.main import process_defaults\n"
        "process_defaults()\n"
        "try:\n"
        "    exec('os.kill(os.getpid(), signal.SIGINT)\\nfor _ in range(10**8): pass')\n"
        "except KeyboardInterrupt:\n"
        "    pass\n"
        "sys.exit(130)\n"
    )
    path = os.pathsep.join(p for p in (str(tmp_path), os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, PYTHONPATH=path)
    proc = subprocess.run([sys.executable, "-m", "startup"], capture_output=True, timeout=60, env=env)
    assert proc.returncode == 130, proc.stderr.decode()

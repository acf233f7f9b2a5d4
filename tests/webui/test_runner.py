"""Job control without a browser: one job at a time, SIGINT stop, state persisted for re-attach,
progress and log tail read from what the job writes. A small stand-in script plays `tuneboard train`."""

from __future__ import annotations

import json
import os
import signal
import sys
import time

import pytest

from tuneboard import rundir
from tuneboard.webui import runner as runner_mod
from tuneboard.webui.runner import JobRunning, Runner, command, read_progress, read_tail

# prints tqdm-like progress, and per step writes the progress record and a log line as training does;
# SIGINT -> "checkpoint" and exit 0
FAKE = r"""
import json, signal, sys, time, pathlib
from tuneboard import rundir
out = pathlib.Path(sys.argv[2]); out.mkdir(parents=True, exist_ok=True)
stop = []
signal.signal(signal.SIGINT, lambda *a: stop.append(1))
total = int(sys.argv[3])
for step in range(1, total + 1):
    if stop:
        (out / ("checkpoint-%d" % step)).mkdir(); print("stopped at step", step, flush=True); sys.exit(0)
    time.sleep(0.05)
    sys.stderr.write("\rtrain:  %d%%|##| %d/%d [00:01<00:09,  1.00it/s]" % (100 * step // total, step, total))
    sys.stderr.flush()
    rundir.write_progress(out, {"step": step, "max_steps": total, "eta": 0.05 * (total - step)})
    rundir.append_log(out, {"step": step, "total_steps": total, "loss": 1.0 / step})
if total == 3:
    sys.exit(3)
(out / "all_results.json").write_text("{}")
print("done", flush=True)
"""


@pytest.fixture
def fake(monkeypatch, tmp_path):
    script = tmp_path / "fake_train.py"
    script.write_text(FAKE)
    steps = {"n": 20}

    def fake_command(kind, config):
        out = tmp_path / "root" / "out"
        return [sys.executable, str(script), "tuneboard", str(out), str(steps["n"]), kind, str(config)]

    monkeypatch.setattr(runner_mod, "command", fake_command)
    root = tmp_path / "root"
    root.mkdir()
    (root / "job.yaml").write_text("x: 1\n")
    return root, steps


def test_command_is_an_argument_list_running_the_cli():
    assert command("train", "configs/a.yaml") == [
        sys.executable,
        "-m",
        "tuneboard",
        "train",
        "configs/a.yaml",
    ]
    with pytest.raises(ValueError):
        command("rm -rf", "x")


def test_run_to_the_end(fake):
    root, steps = fake
    steps["n"] = 5
    r = Runner(root)
    assert r.state() == "idle"
    job = r.start("train", root / "job.yaml", root / "out")
    assert r.is_running() and r.state() == "running"
    assert r.wait(30)
    st = r.status("train")
    assert st["state"] == "finished" and st["returncode"] == 0
    assert st["step"] == 5 and st["total"] == 5
    assert "done" in st["log_tail"]
    assert r.status("eval") == {"state": "idle", "kind": "eval", "busy": False}
    saved = json.loads((root / ".tuneboard" / "job.json").read_text())
    assert saved["pid"] == job.pid and saved["returncode"] == 0 and saved["ended"]


def test_a_second_start_is_refused_and_stop_sends_sigint(fake):
    root, steps = fake
    steps["n"] = 2000
    r = Runner(root)
    r.start("train", root / "job.yaml", root / "out")
    with pytest.raises(JobRunning) as err:
        r.start("eval", root / "job.yaml", root / "out")
    assert err.value.job.kind == "train"
    deadline = time.time() + 20
    while read_progress(root / "out")["step"] < 2 and time.time() < deadline:
        time.sleep(0.1)
    assert r.stop()
    assert r.wait(20)
    st = r.status()
    assert st["state"] == "stopped"
    assert list((root / "out").glob("checkpoint-*")), "SIGINT reached the job, which saved a checkpoint"
    assert not r.stop()  # nothing runs any more


def test_a_new_runner_reattaches_to_a_running_job(fake):
    """A reloaded page or a restarted server: the job is found through job.json, and can be stopped."""
    root, steps = fake
    steps["n"] = 2000
    first = Runner(root)
    job = first.start("train", root / "job.yaml", root / "out")
    second = Runner(root)  # knows nothing but the workspace
    assert second.is_running() and second.state() == "running"
    assert second.job.pid == job.pid and second.job.output_dir == str(root / "out")
    with pytest.raises(JobRunning):
        second.start("train", root / "job.yaml", root / "out")
    # stop once it trains, as a user would: a SIGINT before the job's handler exists can be lost (a background
    # shell starts children with SIGINT ignored)
    deadline = time.time() + 20
    while read_progress(root / "out")["step"] < 2 and time.time() < deadline:
        time.sleep(0.1)
    assert second.stop()
    assert first.wait(20) and second.wait(20)
    assert second.state() == "stopped"


def test_a_job_that_ended_unwatched_is_judged_by_its_output(fake):
    root, _ = fake
    state = root / ".tuneboard" / "job.json"
    state.parent.mkdir()
    dead = {"kind": "train", "pid": 2**22 + 12345, "config": str(root / "job.yaml"), "output_dir": str(root / "out"),
            "log": str(root / "none.log"), "started": time.time()}  # fmt: skip
    state.write_text(json.dumps(dead))
    assert Runner(root).state() == "failed"
    (root / "out").mkdir()
    (root / "out" / "all_results.json").write_text("{}")
    state.write_text(json.dumps(dead))
    r = Runner(root)
    assert r.state() == "finished" and r.job.ended and r.job.returncode is None


def test_a_reused_pid_is_not_mistaken_for_the_job(fake):
    root, _ = fake
    state = root / ".tuneboard" / "job.json"
    state.parent.mkdir()
    mine = {"kind": "train", "pid": os.getpid(), "config": str(root / "job.yaml"), "output_dir": str(root / "out"),
            "log": str(root / "none.log"), "started": time.time()}  # fmt: skip
    state.write_text(json.dumps(mine))
    assert not Runner(root).is_running()


def test_a_failing_job_reports_its_exit_code(fake):
    root, steps = fake
    steps["n"] = 3
    r = Runner(root)
    r.start("train", root / "job.yaml", root / "out")
    assert r.wait(30)
    st = r.status("train")
    assert st["state"] == "failed" and st["returncode"] == 3


def test_environment_for_the_hub_is_set_or_removed(fake, monkeypatch):
    root, steps = fake
    steps["n"] = 1
    monkeypatch.setenv("USE_MODELSCOPE_HUB", "1")
    seen = {}
    real_popen = runner_mod.subprocess.Popen

    def spy(argv, **kw):
        seen.update(kw)
        return real_popen(argv, **kw)

    monkeypatch.setattr(runner_mod.subprocess, "Popen", spy)
    r = Runner(root)
    r.start("train", root / "job.yaml", root / "out", {"USE_MODELSCOPE_HUB": None})
    r.wait(30)
    assert "USE_MODELSCOPE_HUB" not in seen["env"]
    assert seen["cwd"] == root and seen["start_new_session"] and "shell" not in seen
    r.start("train", root / "job.yaml", root / "out", {"USE_MODELSCOPE_HUB": "1"})
    r.wait(30)
    assert seen["env"]["USE_MODELSCOPE_HUB"] == "1"


def test_log_tail_collapses_progress_redraws(tmp_path):
    log = tmp_path / "x.log"
    log.write_bytes(b"first\ntrain: 10%|#| 1/10\rtrain: 20%|#| 2/10 [00:01<00:04, 2it/s]\nlast\n")
    assert read_tail(log, 10) == "first\ntrain: 20%|#| 2/10 [00:01<00:04, 2it/s]\nlast"
    assert read_tail(log, 1) == "last"
    assert read_tail(tmp_path / "missing.log") == ""


def test_progress_from_the_record_training_writes(tmp_path):
    assert read_progress(tmp_path) == {"step": 0, "total": 0, "remaining": None}
    rundir.write_progress(tmp_path, {"step": 2, "max_steps": 10, "eta": 4.2})
    assert read_progress(tmp_path) == {"step": 2, "total": 10, "remaining": "00:04"}
    rundir.write_progress(tmp_path, {"step": 3, "max_steps": 10, "eta": 3725})
    assert read_progress(tmp_path)["remaining"] == "1:02:05"
    rundir.write_progress(tmp_path, {"step": 0, "max_steps": 10, "eta": None})  # no rate known yet
    assert read_progress(tmp_path)["remaining"] is None


def test_progress_from_the_trainer_log_when_ahead(tmp_path):
    rundir.log_path(tmp_path).write_text('{"step": 8, "total_steps": 40}\n{"step": 10, "tot')
    assert read_progress(tmp_path)["step"] == 8
    rundir.write_progress(tmp_path, {"step": 9, "max_steps": 40, "eta": 1})
    assert read_progress(tmp_path) == {"step": 9, "total": 40, "remaining": "00:01"}


def test_sigint_is_what_stop_sends(fake, monkeypatch):
    root, steps = fake
    steps["n"] = 2000
    sent = []
    monkeypatch.setattr(runner_mod.os, "killpg", lambda pid, sig: sent.append((pid, sig)))
    r = Runner(root)
    job = r.start("train", root / "job.yaml", root / "out")
    assert r.stop()
    assert sent == [(job.pid, signal.SIGINT)]
    assert r.status()["state"] == "stopping"
    os.kill(job.pid, signal.SIGKILL)
    r.wait(10)


@pytest.mark.parametrize(
    "change",
    [
        {"log": "/etc/hostname"},
        {"output_dir": "/etc"},
        {"log": "{root}/../outside.log"},
        {"config": "/etc/hostname"},
        {"kind": "rm"},
        {"pid": -1},
        {"pid": "1"},
        {"pid": True},
    ],
)
def test_an_uploaded_job_file_shows_nothing_outside_the_workspace(tmp_path, change):
    """.tuneboard/job.json can be written by an upload: a job whose files lie outside the root (or whose pid
    or kind is not one a runner writes) is not loaded, so no log tail or progress is read from elsewhere and
    Stop signals nothing (os.kill(-1, ...) would reach every process of the user). The job is marked ended
    here so that the test itself never signals anything, fixed or not."""
    root = tmp_path / "root"
    (root / ".tuneboard" / "logs").mkdir(parents=True)
    (root / "job.yaml").write_text("x: 1\n")
    (tmp_path / "outside.log").write_text("SECRET outside the workspace\n")
    job = {
        "kind": "train", "pid": 999999, "config": str(root / "job.yaml"), "output_dir": str(root / "out"),
        "log": str(root / ".tuneboard" / "logs" / "train.log"), "started": 1.0, "ended": 2.0, "returncode": 0,
    }  # fmt: skip
    job.update({k: v.format(root=root) if isinstance(v, str) else v for k, v in change.items()})
    (root / ".tuneboard" / "job.json").write_text(json.dumps(job))
    r = Runner(root)
    assert r.job is None and r.state() == "idle"
    status = r.status("train")
    assert status["state"] == "idle" and "log_tail" not in status
    assert r.stop() is False


def test_a_job_file_inside_the_workspace_is_loaded(tmp_path):
    root = tmp_path / "root"
    (root / ".tuneboard" / "logs").mkdir(parents=True)
    log = root / ".tuneboard" / "logs" / "train.log"
    log.write_text("all went well\n")
    job = {
        "kind": "train", "pid": 999999, "config": "job.yaml", "output_dir": str(root / "out"), "log": str(log),
        "started": 1.0, "ended": 2.0, "returncode": 0,
    }  # fmt: skip
    (root / ".tuneboard" / "job.json").write_text(json.dumps(job))
    status = Runner(root).status("train")
    assert status["state"] == "finished" and "all went well" in status["log_tail"]

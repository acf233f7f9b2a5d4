"""Resume is a property of a stopped run the user picks, not of the free-text run name (issue 21)."""

from __future__ import annotations

import json

import pytest

from tuneboard.errors import TuneboardError
from tuneboard.webui.lookup import resumable_runs, run_target, saves_dir
from tuneboard.webui.paths import Workspace


def _stopped_run(base, name, step=5):
    ck = base / name / f"checkpoint-{step}"
    ck.mkdir(parents=True)
    (ck / "trainer_state.json").write_text(json.dumps({"global_step": step}))


def test_picked_run_resumes_in_its_own_folder(tmp_path):
    ws = Workspace(tmp_path)
    base = saves_dir(ws, "builtin:tiny", "lora")
    _stopped_run(base, "train_old")
    (base / "train_empty").mkdir()  # never saved: not offered
    assert resumable_runs(ws, "builtin:tiny", "lora") == ["train_old"]
    # the free-text name moved to a new timestamp after Stop: the picked run still wins
    out, resuming = run_target(ws, "builtin:tiny", "lora", "train_new_stamp", "train_old")
    assert out == base / "train_old" and resuming
    out, resuming = run_target(ws, "builtin:tiny", "lora", "train_new_stamp", None)
    assert out == base / "train_new_stamp" and not resuming
    with pytest.raises(TuneboardError):
        run_target(ws, "builtin:tiny", "lora", "x", "train_empty")

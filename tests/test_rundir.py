"""rundir: each file of a run directory is read back by the module that writes it, and its checkpoint names are
the HF Trainer's."""

from __future__ import annotations

import json

from tuneboard import rundir


def test_checkpoint_names_are_the_trainers():
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

    assert rundir.checkpoint_name(7) == f"{PREFIX_CHECKPOINT_DIR}-7"
    assert rundir.CHECKPOINT.match(rundir.checkpoint_name(7))


def test_checkpoints_listed_and_complete(tmp_path):
    for step, state in ((10, '{"global_step": 10}'), (5, "{}"), (2, None)):
        folder = tmp_path / rundir.checkpoint_name(step)
        folder.mkdir()
        if state is not None:
            rundir.trainer_state_path(folder).write_text(state)
    (tmp_path / "checkpoint-20.bak").mkdir()
    assert rundir.list_checkpoints(tmp_path) == [tmp_path / "checkpoint-5", tmp_path / "checkpoint-10"]
    assert rundir.complete_checkpoints(tmp_path) == [tmp_path / "checkpoint-10"]


def test_log_results_and_predictions_round_trip(tmp_path):
    assert rundir.read_log(tmp_path) == [] and rundir.last_log(tmp_path) is None
    for step in range(1, 400):
        rundir.append_log(tmp_path, {"step": step, "loss": 1.0})
    with open(rundir.log_path(tmp_path), "a") as fh:
        fh.write('{"step": 400, "lo')  # being written
    assert len(rundir.read_log(tmp_path)) == 399
    assert rundir.last_log(tmp_path, tail=100) == {"step": 399, "loss": 1.0}

    assert not rundir.is_finished(tmp_path) and rundir.finished_marker(tmp_path) is None
    rundir.write_results(tmp_path, {"train_loss": 0.5})
    assert rundir.read_results(tmp_path) == {"train_loss": 0.5} and rundir.is_finished(tmp_path)
    assert rundir.finished_marker(tmp_path) == rundir.RESULTS

    records = [{"prompt": "问", "predict": "答", "label": "答"}]
    rundir.write_predictions(tmp_path, records, {"predict_accuracy": 100.0})
    text = rundir.predictions_path(tmp_path).read_text(encoding="utf-8")
    assert "问" in text  # not escaped, as LLaMA-Factory writes it
    assert rundir.read_predictions(tmp_path) == records and rundir.has_predictions(tmp_path)
    assert rundir.read_predict_results(tmp_path) == {"predict_accuracy": 100.0}


def test_saved_config_and_tiny_marker(tmp_path):
    assert rundir.saved_config(tmp_path) is None and rundir.read_tiny_marker(tmp_path) is None
    rundir.config_path(tmp_path).write_text("template: qwen\n")
    assert rundir.saved_config(tmp_path) == {"template": "qwen"}
    rundir.config_path(tmp_path).write_text("[unclosed")
    assert rundir.saved_config(tmp_path) is None
    rundir.write_tiny_marker(tmp_path, {"template": "chatml"})
    assert rundir.read_tiny_marker(tmp_path) == {"template": "chatml"}


def test_clear_previous_run_removes_only_what_a_run_writes(tmp_path):
    rundir.write_results(tmp_path, {})
    rundir.append_log(tmp_path, {"step": 1})
    rundir.write_progress(tmp_path, {"step": 1})
    (tmp_path / rundir.checkpoint_name(1)).mkdir()
    (tmp_path / "notes.txt").write_text("mine")
    rundir.clear_previous_run(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_progress_is_replaced_whole(tmp_path):
    rundir.write_progress(tmp_path, {"step": 1})
    rundir.write_progress(tmp_path, {"step": 2})
    assert json.loads(rundir.progress_path(tmp_path).read_text()) == {"step": 2}
    assert [p.name for p in tmp_path.iterdir()] == [rundir.PROGRESS]  # no temporary file left

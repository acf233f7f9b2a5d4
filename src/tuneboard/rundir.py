"""The one owner of a run directory's file names: finished markers, checkpoints, and what a run leaves behind.

Lowest layer (no torch); training writes these files, the web UI, export and evaluation read them through here.
Whoever writes a file also reads it: each name comes with its path, its writer and its reader.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import yaml

from .files import write_json_atomic, write_text_atomic

# what `tuneboard train` writes in output_dir
CONFIG = "tuneboard_config.yaml"  # the resolved config, beside every training result
LOG = "trainer_log.jsonl"  # one JSON line per logging step and per evaluation
PROGRESS = "trainer_progress.json"  # the latest step (overwritten every step): what the web UI's bar shows
RESULTS = "all_results.json"  # written last: the run finished
TRAIN_RESULTS = "train_results.json"  # LLaMA-Factory's name; removed with a previous run
PLOT = "training_loss.png"
TRAINER_STATE = "trainer_state.json"  # inside a checkpoint, written last
VALUE_HEAD = "value_head.safetensors"  # stage rm: the reward head inside a checkpoint (an adapter omits it)
PISSA_INIT = "pissa_init"  # PiSSA's adapter before training, which the final save converts against
STAGING = ".{name}.partial"  # checkpoint-N is written in output_dir/.checkpoint-N.partial/checkpoint-N
# what `tuneboard eval` writes in its output_dir, as LLaMA-Factory names them
PREDICTIONS = "generated_predictions.jsonl"
PREDICT_RESULTS = "predict_results.json"
# beside the builtin model (model/tiny.py): its build settings and the template it was built for
TINY_MARKER = "tuneboard_tiny.json"

FINISHED_MARKERS = (
    RESULTS,
    "adapter_model.safetensors",
    "model.safetensors",
    "model.safetensors.index.json",
)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _read_jsonl(path: Path, limit: int | None = None) -> list[dict]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    rows = []
    for line in lines:
        if limit is not None and len(rows) >= limit:
            break
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue  # a line being written right now
    return rows


# ---- the resolved config ----


def config_path(out: str | Path) -> Path:
    return Path(out) / CONFIG


def save_config(out: str | Path, cfg: Any) -> None:
    cfg.save(config_path(out))


def saved_config(folder: str | Path) -> dict | None:
    """The config a training run saved in `folder` (a run directory or its adapter), or None."""
    try:
        data = yaml.safe_load(config_path(folder).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    return data if isinstance(data, dict) else None


# ---- the training log, the per-step progress, the results and the plot ----


def log_path(out: str | Path) -> Path:
    return Path(out) / LOG


def append_log(out: str | Path, record: dict[str, Any]) -> None:
    with open(log_path(out), "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")


def read_log(out: str | Path) -> list[dict]:
    """Every complete line of the training log (a line being written is skipped)."""
    return _read_jsonl(log_path(out))


def last_log(out: str | Path, tail: int = 8192) -> dict | None:
    """The last complete line of the training log, read from the end of the file (cheap on a long run)."""
    try:
        with open(log_path(out), "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - tail))
            lines = fh.read().decode("utf-8", errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        try:
            rec = json.loads(line)
        except ValueError:
            continue  # being written, or cut by the tail
        if isinstance(rec, dict):
            return rec
    return None


def progress_path(out: str | Path) -> Path:
    return Path(out) / PROGRESS


def write_progress(out: str | Path, progress: dict[str, Any]) -> None:
    """Overwrite the progress record atomically (a reader finds the previous one or this one, never half);
    not fsynced: it is rewritten every step and nothing depends on it surviving a crash."""
    write_text_atomic(progress_path(out), json.dumps(progress) + "\n", durable=False)


def read_progress(out: str | Path) -> dict[str, Any] | None:
    data = _read_json(progress_path(out))
    return data if isinstance(data, dict) else None


def results_path(out: str | Path) -> Path:
    return Path(out) / RESULTS


def write_results(out: str | Path, results: dict[str, Any]) -> None:
    write_json_atomic(results_path(out), results)


def read_results(out: str | Path) -> dict | None:
    data = _read_json(results_path(out))
    return data if isinstance(data, dict) else None


def is_finished(out: str | Path) -> bool:
    """A training run finished: its results, written after the model, are there."""
    return results_path(out).exists()


def finished_marker(out: str | Path) -> str | None:
    """The first file that shows `out` holds a finished run (results or a saved model), or None."""
    return next((m for m in FINISHED_MARKERS if (Path(out) / m).exists()), None)


def plot_path(out: str | Path) -> Path:
    return Path(out) / PLOT


# ---- evaluation ----


def predictions_path(out: str | Path) -> Path:
    return Path(out) / PREDICTIONS


def predict_results_path(out: str | Path) -> Path:
    return Path(out) / PREDICT_RESULTS


def write_predictions(out: str | Path, records: list[dict[str, Any]], results: dict[str, Any]) -> None:
    """One JSON line per test record (prompt, predict, label), then the metrics."""
    lines = [json.dumps(r, ensure_ascii=False) for r in records]
    write_text_atomic(predictions_path(out), "\n".join(lines) + "\n")
    write_json_atomic(predict_results_path(out), results)


def read_predictions(out: str | Path, limit: int | None = None) -> list[dict]:
    return _read_jsonl(predictions_path(out), limit)


def read_predict_results(out: str | Path) -> dict | None:
    data = _read_json(predict_results_path(out))
    return data if isinstance(data, dict) else None


def has_predictions(out: str | Path) -> bool:
    return predict_results_path(out).exists()


# ---- the builtin model's marker ----


def write_tiny_marker(model_dir: str | Path, info: dict[str, Any]) -> None:
    (Path(model_dir) / TINY_MARKER).write_text(json.dumps(info, indent=2))


def read_tiny_marker(model_dir: str | Path) -> dict | None:
    data = _read_json(Path(model_dir) / TINY_MARKER)
    return data if isinstance(data, dict) else None


# ---- checkpoints ----

CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def checkpoint_name(step: int) -> str:
    """checkpoint-N, the name the HF Trainer gives the checkpoint of step N."""
    return f"checkpoint-{step}"


def trainer_state_path(checkpoint: str | Path) -> Path:
    return Path(checkpoint) / TRAINER_STATE


def staging_path(out: str | Path, name: str) -> Path:
    """Where `name` (checkpoint-N, final) is written before it is renamed into `out`."""
    return Path(out) / STAGING.format(name=name)


def remove_staging(out: str | Path) -> None:
    """What a killed save left behind."""
    for p in Path(out).glob(STAGING.format(name="*")):
        shutil.rmtree(p, ignore_errors=True)


def pissa_init_path(out: str | Path) -> Path:
    """Written by train/workflow.py before a PiSSA run trains, read by the final save (trainer.py)."""
    return Path(out) / PISSA_INIT


def clear_previous_run(out: Path) -> None:
    """overwrite_output_dir: remove only what a run writes, never other files of the user's."""
    for p in [*out.glob("checkpoint-*"), pissa_init_path(out)]:
        shutil.rmtree(p, ignore_errors=True)
    for name in (*FINISHED_MARKERS, LOG, PROGRESS, PLOT, TRAIN_RESULTS):
        (out / name).unlink(missing_ok=True)


def is_complete_checkpoint(path: Path) -> bool:
    """trainer_state.json is written last, and the folder is renamed to checkpoint-N only after it."""
    state = _read_json(trainer_state_path(path))
    return isinstance(state, dict) and "global_step" in state


def list_checkpoints(out: str | Path) -> list[Path]:
    """checkpoint-N folders holding a trainer_state.json, by step (complete_checkpoints also reads it)."""
    found = []
    for p in Path(out).glob("checkpoint-*"):
        m = CHECKPOINT.match(p.name)
        if m and p.is_dir() and trainer_state_path(p).is_file():
            found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found)]


def complete_checkpoints(out: Path) -> list[Path]:
    """Complete checkpoints by step. A save that was killed is never picked: it lives under a temporary
    name (`.checkpoint-N.partial`), or, written by another tool in place, lacks a readable trainer_state.json."""
    return [p for p in list_checkpoints(out) if is_complete_checkpoint(p)]

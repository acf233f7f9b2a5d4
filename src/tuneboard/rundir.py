"""TODO docstring."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

FINISHED_MARKERS = (
    "all_results.json",
    "adapter_model.safetensors",
    "model.safetensors",
    "model.safetensors.index.json",
)


def clear_previous_run(out: Path) -> None:
    """overwrite_output_dir: remove only what a run writes, never other files of the user's."""
    for p in out.glob("checkpoint-*"):
        shutil.rmtree(p, ignore_errors=True)
    for name in (*FINISHED_MARKERS, "trainer_log.jsonl", "training_loss.png", "train_results.json"):
        (out / name).unlink(missing_ok=True)


CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def is_complete_checkpoint(path: Path) -> bool:
    """trainer_state.json is written last, and the folder is renamed to checkpoint-N only after it."""
    try:
        state = json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
    except (ValueError, OSError):
        return False
    return isinstance(state, dict) and "global_step" in state


def complete_checkpoints(out: Path) -> list[Path]:
    """Complete checkpoints by step. A save that was killed is never picked: it lives under a temporary
    name (`.checkpoint-N.partial`), or, written by another tool in place, lacks a readable trainer_state.json."""
    found = []
    for p in out.glob("checkpoint-*"):
        m = CHECKPOINT.match(p.name)
        if m and p.is_dir() and is_complete_checkpoint(p):
            found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found)]

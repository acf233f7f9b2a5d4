"""The Train tab's run list: each run under saves/<model>/<method>/ with its dataset, method, stage, steps
done / total, status and last logged loss, read from what the run left (rundir's readers).

Interface layer helper (no gradio). Status: `running` while the workspace's job writes the folder, else
`finished` (results written), `stopped` (a complete checkpoint to resume from) or `failed` (neither).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import rundir
from .lookup import saves_dir
from .paths import Workspace

STATUSES = ("running", "stopped", "finished", "failed")
COLUMNS = ("run", "dataset", "method", "stage", "steps", "status", "loss")
# method options that change what trains, shown beside finetuning_type
OPTIONS = (("use_dora", "DoRA"), ("use_rslora", "rsLoRA"), ("pissa_init", "PiSSA"))


def status(out: Path, job_state: str | None = None) -> str:
    """A run's status; `job_state` is the runner's state when the workspace's last job wrote `out`."""
    if job_state in ("running", "stopping"):
        return "running"
    if rundir.is_finished(out):
        return "finished"
    if job_state == "failed":
        return "failed"
    return "stopped" if rundir.complete_checkpoints(out) else "failed"


def steps(out: Path, finished: bool) -> tuple[int, int | None]:
    """(steps done, total steps or None): the progress record, the log when it is ahead, else the last
    complete checkpoint; a finished run did all of its steps."""
    done, total = 0, None
    rec = rundir.read_progress(out)
    if rec:
        done, total = int(rec.get("step") or 0), int(rec.get("max_steps") or 0) or None
    last = rundir.last_log(out)
    if last and int(last.get("step") or 0) >= done:
        done, total = int(last.get("step") or 0), last.get("total_steps") or total
    checkpoints = rundir.complete_checkpoints(out)
    if checkpoints:
        done = max(done, int(checkpoints[-1].name.rsplit("-", 1)[1]))
    if finished and total:
        done = total
    return done, total


def last_loss(out: Path) -> float | None:
    """The loss of the last logged training step."""
    losses = [r["loss"] for r in rundir.read_log(out) if isinstance(r.get("loss"), (int, float))]
    return losses[-1] if losses else None


def method(config: dict[str, Any]) -> str:
    name = str(config.get("finetuning_type") or "?")
    extras = [label for key, label in OPTIONS if config.get(key)]
    if config.get("loraplus_lr_ratio"):
        extras.append("LoRA+")
    return " + ".join([name, *extras])


def describe(out: Path, job_state: str | None = None) -> dict[str, Any]:
    """One row of the run list."""
    config = rundir.saved_config(out) or {}
    state = status(out, job_state)
    done, total = steps(out, state == "finished")
    return {
        "run": out.name,
        "dataset": str(config.get("dataset") or "?"),
        "method": method(config) if config else "?",
        "stage": str(config.get("stage") or "?"),
        "steps": f"{done} / {total or '?'}",
        "status": state,
        "loss": last_loss(out),
    }


def run_list(
    ws: Workspace, model: str, finetuning_type: str, job: dict[str, Any] | None = None
) -> list[dict]:
    """The runs of the model and method, newest first. `job` is the runner's status of the train job."""
    base = saves_dir(ws, model, finetuning_type)
    if not base.is_dir():
        return []
    job_dir = Path(job["output_dir"]).resolve() if job and job.get("output_dir") else None
    folders = [p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")]
    rows = []
    for out in sorted(folders, key=lambda p: p.stat().st_mtime, reverse=True):
        job_state = job.get("state") if job and job_dir == out.resolve() else None
        trained = rundir.saved_config(out) or rundir.log_path(out).exists() or rundir.list_checkpoints(out)
        if not (trained or job_state):
            continue  # an evaluation's folder, or an empty one
        rows.append(describe(out, job_state))
    return rows

"""Before training touches output_dir: may it be written, does it hold a finished run, which checkpoint resumes.

Training layer; the file names come from rundir.py.
"""

from __future__ import annotations

from pathlib import Path

from ..config import Config
from ..errors import TuneboardError
from ..files import unwritable_reason
from ..rundir import TRAINER_STATE, complete_checkpoints, finished_marker, is_complete_checkpoint


def check_output_dir(cfg: Config) -> None:
    out = Path(cfg.output_dir)
    if out.exists() and not out.is_dir():
        raise TuneboardError(f"output_dir {out}: exists and is not a directory")
    reason = unwritable_reason(out)
    if reason:  # found now, not after the model has loaded and the first checkpoint is due
        raise TuneboardError(f"output_dir {out}: cannot write there ({reason})")
    finished = finished_marker(out)
    if finished and not cfg.overwrite_output_dir and not cfg.resume_from_checkpoint:
        raise TuneboardError(
            f"output_dir {out}: already holds a finished run ({finished}); set overwrite_output_dir: true, "
            "choose another output_dir, or continue it with resume_from_checkpoint: true"
        )


def resolve_resume(cfg: Config) -> str | None:
    value = cfg.resume_from_checkpoint
    if not value:
        return None
    if str(value).lower() == "true":
        ckpts = complete_checkpoints(Path(cfg.output_dir))
        if not ckpts:
            raise TuneboardError(f"resume_from_checkpoint: no complete checkpoint in {cfg.output_dir}")
        return str(ckpts[-1])
    path = Path(value)
    if not path.is_dir():
        raise TuneboardError(f"resume_from_checkpoint: {path} is not a checkpoint directory")
    if not is_complete_checkpoint(path):
        raise TuneboardError(
            f"resume_from_checkpoint: {path} is not a complete checkpoint (no readable {TRAINER_STATE})"
        )
    return str(path)

"""The training stages, siblings that share train/trainer.BaseTrainer: sft, pt (sft's loss on plain text),
dpo, kto and rm. `stage_trainer` picks the trainer class of a config's `stage`.

Training layer.
"""

from __future__ import annotations

from typing import Any


def stage_trainer(cfg: Any) -> type:
    """The trainer class that runs `cfg.stage` (imported on demand: each pulls in torch and transformers)."""
    if cfg.stage in ("sft", "pt"):
        from .sft import SFTTrainer

        return SFTTrainer
    if cfg.stage == "dpo":
        from .dpo import DPOTrainer

        return DPOTrainer
    if cfg.stage == "kto":
        from .kto import KTOTrainer

        return KTOTrainer
    if cfg.stage == "rm":
        from .rm import RewardTrainer

        return RewardTrainer
    raise ValueError(f"no trainer for stage {cfg.stage!r}")

"""`rope_scaling` (LLaMA-Factory's key): a longer context than the model was trained for, through transformers'
RoPE types (linear, dynamic NTK, YaRN, Llama 3). The factor is ceil(cutoff_len / the model's original length),
as in LLaMA-Factory; nothing changes when cutoff_len fits. A LoRA run's scaling is read back from the config it
saved (tuneboard_config.yaml), so chat, eval and export of its adapter see the positions it was trained with;
a full or freeze run keeps it in its own config.json.

Model layer; load.load_model applies it to the model config before the weights load.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import Any

from .. import rundir


def warn(msg: str) -> None:
    if os.environ.get("RANK", "0") == "0":  # once, not per training process
        print(f"warning: {msg}", file=sys.stderr, flush=True)


def requested(cfg: Any, adapters: list[Path]) -> tuple[str, int] | None:
    """(kind, length) from the config, else from the run that made the first adapter asking for one."""
    if cfg.rope_scaling:
        return cfg.rope_scaling, cfg.cutoff_len
    for adapter in adapters:
        saved = rundir.saved_config(adapter) or {}
        if saved.get("rope_scaling"):
            return saved["rope_scaling"], int(saved.get("cutoff_len") or cfg.cutoff_len)
    return None


def apply(config: Any, kind: str, length: int) -> dict[str, Any] | None:
    """Set the RoPE parameters of a transformers config for `length` tokens; the parameters, or None (unchanged)."""
    params = dict(getattr(config, "rope_parameters", None) or {})
    if not params and not hasattr(config, "rope_theta"):
        warn(f"rope_scaling: {kind}: this model has no rotary position embeddings; ignored")
        return None
    if params.get("rope_type", "default") != "default":  # scaled already (Llama 3.1, Qwen2.5's YaRN, ...)
        warn(
            f"rope_scaling: {kind}: the model already uses {params['rope_type']} RoPE scaling; kept as it is"
        )
        return None
    old = int(config.max_position_embeddings)
    if length <= old:
        warn(f"rope_scaling: {kind}: cutoff_len {length} fits the model's {old} positions; no scaling")
        return None
    factor = float(math.ceil(length / old))
    params.update(rope_type=kind, factor=factor)
    if "rope_theta" not in params and hasattr(config, "rope_theta"):
        params["rope_theta"] = config.rope_theta
    if kind in ("dynamic", "yarn", "llama3"):
        params["original_max_position_embeddings"] = old
    if kind == "llama3":
        params.update(low_freq_factor=1.0, high_freq_factor=4.0)
    config.rope_parameters = params
    config.max_position_embeddings = int(old * factor)
    return params

"""TODO docstring."""

from __future__ import annotations

from typing import Any

from ..config import Config

GEN_KEYS = ("max_new_tokens", "do_sample", "temperature", "top_p", "top_k", "repetition_penalty", "num_beams")


def generation_kwargs(cfg: Config, **overrides: Any) -> dict[str, Any]:
    """The config's generation settings with per-request overrides; greedy when temperature is 0."""
    kw = {k: getattr(cfg, k) for k in GEN_KEYS}
    kw.update({k: v for k, v in overrides.items() if v is not None and k in (*GEN_KEYS, "min_new_tokens")})
    if kw.get("temperature") == 0 or not kw["do_sample"]:
        kw["do_sample"] = False
        for k in ("temperature", "top_p", "top_k"):
            kw.pop(k, None)
    return kw

"""Inference: engine.py is the contract (no backend imported), hf.py and vllm.py the backends, generation.py
the settings; `make_engine` picks the backend that `infer_backend` names.
"""

from __future__ import annotations

from typing import Any

from ..config import Config
from .hf import ChatEngine


def make_engine(cfg: Config) -> Any:
    """The engine `infer_backend` asks for: ChatEngine (transformers) or VllmEngine (same interface)."""
    if cfg.infer_backend == "vllm":
        from .vllm import VllmEngine

        return VllmEngine(cfg)
    return ChatEngine(cfg)

"""The optimizer choices beyond TrainingArguments' own names: LoRA+ (peft's builder: the B matrices at
learning_rate x loraplus_lr_ratio), Muon beside AdamW (muon.py), BAdam and Adam-mini (block_optim.py), GaLore and APOLLO (transformers' low-rank optimizers, from their PyPI packages).

Training layer: arguments.py asks `low_rank_arguments` for TrainingArguments, trainer.py asks `build` for the
optimizer; the Trainer's own optimizer is used when neither applies.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from ..config import Config, split_names
from ..errors import ConfigError
from .launch import warn

# packages each optimizer needs: (import name, what to install)
PACKAGES = {
    "use_galore": (
        ("galore_torch", "bitsandbytes"),
        "pip install 'tuneboard[galore]' (galore-torch, bitsandbytes)",
    ),
    "use_apollo": (
        ("apollo_torch", "bitsandbytes"),
        "pip install 'tuneboard[apollo]' (apollo-torch, bitsandbytes)",
    ),
    "use_badam": (("badam",), "pip install 'tuneboard[badam]' (badam)"),
    "use_adam_mini": (("adam_mini",), "pip install 'tuneboard[adam-mini]' (adam-mini)"),
}
ALL_BUT_HEAD = r"(?!.*lm_head).*"  # every linear layer but the LM head (transformers matches the whole name)


def check_packages(cfg: Config) -> None:
    for key, (modules, install) in PACKAGES.items():
        missing = [m for m in modules if importlib.util.find_spec(m) is None]
        if getattr(cfg, key) and missing:
            raise ConfigError(f"{cfg.source}: '{key}' needs the {', '.join(missing)} package: {install}")


def low_rank_arguments(cfg: Config) -> dict[str, Any]:
    """TrainingArguments for GaLore / APOLLO: optim, optim_target_modules and the optim_args string."""
    if not (cfg.use_galore or cfg.use_apollo):
        return {}
    check_packages(cfg)
    name = "galore" if cfg.use_galore else "apollo"
    get = lambda key: getattr(cfg, f"{name}_{key}")  # noqa: E731
    args = {"rank": get("rank"), "update_proj_gap": get("update_interval"), "scale": get("scale")}
    args["proj_type"] = get("proj_type")
    if cfg.use_apollo:
        args |= {"proj": cfg.apollo_proj, "scale_type": cfg.apollo_scale_type}
        if cfg.apollo_scale_front:
            warn("apollo_scale_front: transformers' APOLLO has no such option; ignored")
    if cfg.optim not in ("adamw_torch", "adamw_hf"):
        warn(f"use_{name}: optim {cfg.optim} is replaced by {name}_adamw")
    extra = f",{cfg.optim_args}" if cfg.optim_args else ""
    target = get("target")
    return {
        "optim": f"{name}_adamw" + ("_layerwise" if get("layerwise") else ""),
        "optim_target_modules": ALL_BUT_HEAD if target == "all" else split_names(target),
        "optim_args": ",".join(f"{k}={v}" for k, v in args.items()) + extra,
    }


def build(trainer: Any) -> Any | None:
    """LoRA+: peft's optimizer with the B matrices (and LoRA embeddings) in their own parameter groups, on the
    Trainer's optimizer class and arguments; Muon (muon.py) beside AdamW; None: the Trainer builds its own."""
    cfg = trainer.cfg
    if cfg.use_badam or cfg.use_adam_mini:
        from . import block_optim

        check_packages(cfg)
        if cfg.use_adam_mini:
            return block_optim.adam_mini(trainer.model, trainer.args)
        optimizer_cls, kwargs = trainer.get_optimizer_cls_and_kwargs(trainer.args, trainer.model)
        return block_optim.badam(trainer.model, cfg, optimizer_cls, dict(kwargs), trainer.args.weight_decay)
    if cfg.use_muon:
        import torch

        from . import muon

        if not hasattr(torch.optim, "Muon"):
            raise ConfigError(f"{cfg.source}: 'use_muon' needs torch.optim.Muon (torch 2.9 or newer)")
        if cfg.optim not in ("adamw_torch", "adamw_hf"):
            warn(f"use_muon: optim {cfg.optim} is replaced by Muon + AdamW")
        a = trainer.args
        return muon.build(
            trainer.model, a.learning_rate, a.weight_decay, (a.adam_beta1, a.adam_beta2), a.adam_epsilon
        )
    if cfg.loraplus_lr_ratio is None:
        return None
    from peft.optimizers import create_loraplus_optimizer

    optimizer_cls, kwargs = trainer.get_optimizer_cls_and_kwargs(trainer.args, trainer.model)
    kwargs = dict(kwargs)
    lr = kwargs.pop("lr", trainer.args.learning_rate)
    return create_loraplus_optimizer(
        trainer.model,
        optimizer_cls,
        lr=lr,
        loraplus_lr_ratio=cfg.loraplus_lr_ratio,
        loraplus_lr_embedding=cfg.loraplus_lr_embedding,
        loraplus_weight_decay=trainer.args.weight_decay,
        **kwargs,
    )

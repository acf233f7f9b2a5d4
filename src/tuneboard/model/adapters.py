"""LoRA / freeze / full: decide which parameters train (peft for LoRA).

Model layer; train/workflow.py calls `prepare(model, cfg, adapters)` once, after loading; `merge_adapters` is the
one merge loop (training, inference, export).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..config import Config, split_names
from ..errors import ConfigError

log = logging.getLogger(__name__)


def linear_module_names(model: Any) -> list[str]:
    """Short names of the Linear layers inside the transformer blocks (what `lora_target: all` means)."""
    import torch

    names = set()
    for full, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and "lm_head" not in full and "output_layer" not in full:
            names.add(full.split(".")[-1])
    return sorted(names)


def decoder_layers(model: Any) -> Any:
    inner = getattr(model, "model", model)
    for attr in ("layers", "h", "blocks"):
        layers = getattr(inner, attr, None)
        if layers is not None:
            return layers
    raise ConfigError("freeze: cannot find the decoder layers of this model architecture")


def apply_lora(model: Any, cfg: Config) -> Any:
    from peft import LoraConfig, get_peft_model

    available = linear_module_names(model)
    if cfg.lora_target == "all":
        targets = available
    else:
        targets = split_names(cfg.lora_target)
        missing = [t for t in targets if t not in available]
        if missing:
            raise ConfigError(
                f"lora_target: {', '.join(missing)} not found in the model; its linear layers are: "
                f"{', '.join(available)} (or use 'all')"
            )
    lora = LoraConfig(
        task_type="CAUSAL_LM",
        r=cfg.lora_rank,
        lora_alpha=cfg.lora_alpha or cfg.lora_rank * 2,
        lora_dropout=cfg.lora_dropout,
        target_modules=targets,
        modules_to_save=split_names(cfg.additional_target) or None,
    )
    return get_peft_model(model, lora)


def merge_adapters(model: Any, adapters: Sequence[str | Path]) -> Any:
    """Apply LoRA adapters in order, each merged into the weights before the next (the one merge loop: training,
    inference and export all call it)."""
    if not adapters:
        return model
    from peft import PeftModel

    for path in adapters:
        model = PeftModel.from_pretrained(model, str(path)).merge_and_unload()
    return model


def continue_lora(model: Any, adapters: list[str]) -> Any:
    """Merge all but the last given adapter; keep training the last (LLaMA-Factory's behaviour)."""
    from peft import PeftModel

    model = merge_adapters(model, adapters[:-1])
    return PeftModel.from_pretrained(model, adapters[-1], is_trainable=True)


def apply_freeze(model: Any, cfg: Config) -> Any:
    layers = decoder_layers(model)
    n = cfg.freeze_trainable_layers
    if n == 0 or n > len(layers):
        raise ConfigError(
            f"freeze_trainable_layers must be between 1 and {len(layers)} (the model's layers), got {n}"
        )
    chosen = set(range(len(layers) - n, len(layers)))
    for p in model.parameters():
        p.requires_grad_(False)
    for i in chosen:
        for p in layers[i].parameters():
            p.requires_grad_(True)
    for name in split_names(cfg.additional_target):
        for full, module in model.named_modules():
            if full.split(".")[-1] == name:
                for p in module.parameters():
                    p.requires_grad_(True)
    return model


def prepare(model: Any, cfg: Config, adapters: list[str]) -> Any:
    if cfg.quantization_bit and cfg.finetuning_type != "lora":
        raise ConfigError("quantization_bit (QLoRA) works only with finetuning_type: lora")
    if cfg.quantization_bit:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing)
    elif cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    if cfg.finetuning_type == "lora":
        if cfg.gradient_checkpointing:
            model.enable_input_require_grads()
        return continue_lora(model, adapters) if adapters else apply_lora(model, cfg)
    model = merge_adapters(model, adapters)
    if cfg.finetuning_type == "freeze":
        return apply_freeze(model, cfg)
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def count_parameters(model: Any) -> tuple[int, int]:
    total = trainable = 0
    for p in model.parameters():
        n = p.numel()
        total += n
        if p.requires_grad:
            trainable += n
    return total, trainable

"""LoRA (with DoRA, rsLoRA, PiSSA) / OFT / freeze (with LLaMA-Pro) / full: decide which parameters train (peft for
the adapters). The one place a method changes what trains; LoRA+ changes only learning rates (train/optimizer.py).

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


def target_modules(model: Any, key: str, value: str) -> list[str]:
    """The linear layers named by lora_target / oft_target: all, or names that must exist in the model."""
    available = linear_module_names(model)
    if value == "all":
        return available
    targets = split_names(value)
    missing = [t for t in targets if t not in available]
    if missing:
        raise ConfigError(
            f"{key}: {', '.join(missing)} not found in the model; its linear layers are: "
            f"{', '.join(available)} (or use 'all')"
        )
    return targets


def pissa_init(cfg: Config) -> str | bool:
    """peft's init_lora_weights: PiSSA by exact SVD (pissa_iter -1) or by fast SVD in pissa_iter iterations."""
    if not cfg.pissa_init:
        return True
    return "pissa" if cfg.pissa_iter == -1 else f"pissa_niter_{cfg.pissa_iter}"


def apply_lora(model: Any, cfg: Config) -> Any:
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        task_type="CAUSAL_LM",
        r=cfg.lora_rank,
        lora_alpha=cfg.lora_alpha or cfg.lora_rank * 2,
        lora_dropout=cfg.lora_dropout,
        target_modules=target_modules(model, "lora_target", cfg.lora_target),
        modules_to_save=split_names(cfg.additional_target) or None,
        use_dora=cfg.use_dora,
        use_rslora=cfg.use_rslora,
        init_lora_weights=pissa_init(cfg),
    )
    return get_peft_model(model, lora)


def apply_oft(model: Any, cfg: Config) -> Any:
    """Orthogonal fine-tuning through peft: each target layer's weight rotated by a block-diagonal orthogonal
    matrix (oft_rank blocks, or blocks of oft_block_size)."""
    from peft import OFTConfig, get_peft_model

    oft = OFTConfig(
        task_type="CAUSAL_LM",
        r=cfg.oft_rank,
        oft_block_size=cfg.oft_block_size,
        module_dropout=cfg.module_dropout,
        target_modules=target_modules(model, "oft_target", cfg.oft_target),
        modules_to_save=split_names(cfg.additional_target) or None,
    )
    try:
        return get_peft_model(model, oft)
    except ValueError as exc:  # a block size that divides no layer's width
        raise ConfigError(f"OFT: {str(exc).strip().splitlines()[0]}") from None


def save_pissa_init(model: Any, path: Path) -> None:
    """The PiSSA adapter before training: what the final save converts against (rundir names the folder)."""
    model.save_pretrained(str(path))


def save_pissa_converted(model: Any, path: Path, init_dir: Path) -> None:
    """Save a trained PiSSA adapter as a plain LoRA (rank 2r) of the original base weights, so that loading or
    merging it needs no residual model (peft's conversion)."""
    model.save_pretrained(str(path), path_initial_model_for_weight_conversion=str(init_dir))


def merge_adapters(model: Any, adapters: Sequence[str | Path]) -> Any:
    """Apply LoRA adapters in order, each merged into the weights before the next (the one merge loop: training,
    inference and export all call it)."""
    if not adapters:
        return model
    from peft import PeftModel

    for path in adapters:
        model = PeftModel.from_pretrained(model, str(path)).merge_and_unload()
    return model


def continue_lora(model: Any, adapters: list[str], cfg: Config) -> Any:
    """Merge all but the last given adapter; keep training the last (LLaMA-Factory's behaviour); with
    create_new_adapter, merge them all and start a new one."""
    from peft import PeftModel

    if cfg.create_new_adapter:
        return apply_lora(merge_adapters(model, adapters), cfg)
    model = merge_adapters(model, adapters[:-1])
    return PeftModel.from_pretrained(model, adapters[-1], is_trainable=True)


def freeze_layers(cfg: Config, count: int) -> list[int]:
    """The layers freeze trains: the last freeze_trainable_layers, or with use_llama_pro the expanded blocks that
    LLaMA-Pro inserts after every count/freeze_trainable_layers originals (the last of each group)."""
    n = cfg.freeze_trainable_layers
    if n == 0 or n > count:
        raise ConfigError(
            f"freeze_trainable_layers must be between 1 and {count} (the model's layers), got {n}"
        )
    if cfg.use_llama_pro:
        if count % n:
            raise ConfigError(
                f"use_llama_pro: the model's {count} layers are not {n} equal groups (freeze_trainable_layers)"
            )
        return list(range(count // n - 1, count, count // n))
    return list(range(count - n, count))


def _train_modules(root: Any, names: list[str], key: str, where: str) -> None:
    found = set()
    for full, module in root.named_modules():
        if full and full.split(".")[-1] in names:
            found.add(full.split(".")[-1])
            for p in module.parameters():
                p.requires_grad_(True)
    missing = [n for n in names if n not in found]
    if missing:
        raise ConfigError(f"{key}: {', '.join(missing)} not found in {where}")


def apply_freeze(model: Any, cfg: Config) -> Any:
    layers = decoder_layers(model)
    for p in model.parameters():
        p.requires_grad_(False)
    modules = split_names(cfg.freeze_trainable_modules)
    for i in freeze_layers(cfg, len(layers)):
        if modules == ["all"]:
            for p in layers[i].parameters():
                p.requires_grad_(True)
        else:
            _train_modules(layers[i], modules, "freeze_trainable_modules", f"layer {i}")
    extra = [*split_names(cfg.additional_target), *split_names(cfg.freeze_extra_modules)]
    if extra:
        _train_modules(model, extra, "freeze_extra_modules", "the model")
    return model


def prepare(model: Any, cfg: Config, adapters: list[str]) -> Any:
    if cfg.quantization_bit and cfg.finetuning_type not in ("lora", "oft"):
        raise ConfigError("quantization_bit (QLoRA) works only with finetuning_type: lora or oft")
    if cfg.quantization_bit:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing)
    elif cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    if cfg.finetuning_type == "lora":
        if cfg.gradient_checkpointing:
            model.enable_input_require_grads()
        return continue_lora(model, adapters, cfg) if adapters else apply_lora(model, cfg)
    model = merge_adapters(model, adapters)
    if cfg.finetuning_type == "oft":
        if cfg.gradient_checkpointing:
            model.enable_input_require_grads()
        return apply_oft(model, cfg)
    if cfg.finetuning_type == "freeze":
        return apply_freeze(model, cfg)
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def count_parameters(model: Any) -> tuple[int, int]:
    total = trainable = 0
    for p in model.parameters():
        n = getattr(p, "ds_numel", None) or p.numel()  # DeepSpeed ZeRO-3 leaves an empty local tensor
        total += n
        if p.requires_grad:
            trainable += n
    return total, trainable

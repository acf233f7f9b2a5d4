"""Training settings for the HF Trainer: precision the machine can do, TrainingArguments from the config, and
the checks of names that live inside transformers (optim, lr_scheduler_type) or outside (deepspeed file).

Training layer; train/workflow.py calls it before the model is loaded.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any

from ..config import Config
from ..errors import ConfigError
from ..method_keys import TRAINING_ARGUMENTS
from .launch import visible_gpus, warn, world_size
from .optimizer import check_packages, low_rank_arguments


def cpu_bf16_supported() -> bool:
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(cfg: Config) -> str:
    """'bf16' | 'fp16' | 'fp32'; a precision the machine cannot do falls back with one warning."""
    import torch

    cuda = torch.cuda.is_available() and not cfg.use_cpu
    if cfg.bf16:
        if (cuda and torch.cuda.is_bf16_supported()) or (not cuda and cpu_bf16_supported()):
            return "bf16"
        fallback = "fp16" if cuda else "fp32"
        warn(f"bf16: true is not supported on this {'GPU' if cuda else 'CPU'}; training in {fallback}")
        return fallback
    if cfg.fp16:
        if cuda:
            return "fp16"
        warn("fp16: true needs a CUDA GPU; training in fp32 on the CPU")
    return "fp32"


def check_deepspeed(cfg: Config) -> None:
    """`deepspeed:` names a JSON file that exists and parses (relative paths are from the working directory)."""
    if not cfg.deepspeed:
        return
    path = Path(cfg.deepspeed).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"{cfg.source}: deepspeed: {cfg.deepspeed} not found (a DeepSpeed JSON config, "
            "e.g. examples/deepspeed/ds_z3_config.json; relative paths are read from the working directory)"
        )
    try:
        ds = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{cfg.source}: deepspeed: {path} is not valid JSON ({exc})") from None
    if not isinstance(ds, dict):
        raise ConfigError(f"{cfg.source}: deepspeed: {path} must hold a JSON object")
    fp16 = ds.get("fp16")
    if isinstance(fp16, dict) and fp16.get("enabled") is True and (cfg.use_cpu or not visible_gpus()):
        raise ConfigError(
            f"{cfg.source}: deepspeed: {path} sets fp16.enabled to true, which DeepSpeed refuses on a CPU; "
            'set it to "auto" (it then follows bf16 / fp16 in the config, as far as this machine can)'
        )
    import importlib.util

    if importlib.util.find_spec("deepspeed") is None:
        raise ConfigError(
            f"{cfg.source}: deepspeed: {path} needs the DeepSpeed package: pip install deepspeed"
        )


def check_trainer_names(cfg: Config) -> None:
    """`optim` and `lr_scheduler_type` name things inside transformers: checked against its lists; the packages
    GaLore and APOLLO need are there."""
    check_packages(cfg)
    from transformers.trainer_utils import SchedulerType
    from transformers.training_args import OptimizerNames

    for key, enum in (("optim", OptimizerNames), ("lr_scheduler_type", SchedulerType)):
        value, allowed = getattr(cfg, key), [e.value for e in enum]
        if value not in allowed:
            close = difflib.get_close_matches(str(value), allowed, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f"; e.g. {', '.join(allowed[:5])}"
            raise ConfigError(f"{cfg.source}: '{key}' is {value!r}, which transformers does not know{hint}")


# config keys that TrainingArguments takes under the same name and meaning, passed as they are
SAME_NAME = (
    "output_dir",
    "per_device_train_batch_size",
    "per_device_eval_batch_size",
    "gradient_accumulation_steps",
    "learning_rate",
    "num_train_epochs",
    "max_steps",
    "lr_scheduler_type",
    "weight_decay",
    "max_grad_norm",
    "optim",
    "logging_steps",
    "save_strategy",
    "save_steps",
    "save_total_limit",
    "save_only_model",
    "seed",
    "ddp_timeout",
    "dataloader_num_workers",
    "deepspeed",
)


def training_args(cfg: Config, precision: str, has_eval: bool) -> Any:
    """TrainingArguments: the keys of SAME_NAME as they are, then the ones tuneboard derives."""
    from transformers import TrainingArguments

    same = {key: getattr(cfg, key) for key in (*SAME_NAME, *TRAINING_ARGUMENTS)}
    same |= low_rank_arguments(cfg)  # GaLore / APOLLO: optim, optim_target_modules, optim_args
    eval_strategy = cfg.eval_strategy if has_eval else "no"
    if has_eval and eval_strategy == "no" and cfg.eval_steps:
        eval_strategy = "steps"
    # several processes without CUDA (torchrun on CPUs): accelerate sets up gloo only when told to use the CPU
    cpu_ddp = world_size() > 1 and not _cuda_available()
    return TrainingArguments(
        **same,
        lr_scheduler_kwargs=json.loads(cfg.lr_scheduler_kwargs) if cfg.lr_scheduler_kwargs else {},
        warmup_steps=cfg.warmup_steps if cfg.warmup_steps else cfg.warmup_ratio,  # a float < 1 is a ratio
        eval_strategy=eval_strategy,
        eval_steps=cfg.eval_steps or (cfg.save_steps if eval_strategy == "steps" else None),
        report_to="none" if cfg.report_to in ("none", "", None) else cfg.report_to.split(","),
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=cfg.use_cpu or not _cuda_available(),  # also lets bf16 autocast run on a CPU that has it
        ddp_backend="gloo" if cpu_ddp or (cfg.use_cpu and world_size() > 1) else None,
        data_seed=cfg.seed,
        # batches of similar lengths pad less; a padding-free batch has no padding to save
        train_sampling_strategy=(
            "group_by_length" if cfg.group_by_length and not (cfg.packing or cfg.padding_free) else "random"
        ),
        remove_unused_columns=False,
        dataloader_pin_memory=_cuda_available(),
        disable_tqdm=True,
        label_names=["labels"],
    )


def weight_dtype(cfg: Config, precision: str) -> Any:
    """The dtype the base weights are loaded in, always chosen here: transformers 5 otherwise keeps the dtype
    a checkpoint was saved in (bf16 for most), which trains in another precision than asked for, and on a CPU
    without native bf16 runs ~25-70x slower. Frozen weights (LoRA, freeze) go to half precision on a GPU that
    computes in it; trained weights stay fp32 (mixed precision keeps fp32 masters)."""
    import torch

    if precision in ("bf16", "fp16") and cfg.finetuning_type != "full" and _cuda_available():
        return torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.float32


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()

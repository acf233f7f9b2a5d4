"""Typed settings: one flat dataclass whose field names are the YAML keys and the key=value overrides.

Lowest layer with hub.py: no torch import. Accepts LLaMA-Factory's key names so their configs run unchanged.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError
from .files import write_text_atomic

STAGES_NOT_YET = {"pt", "rm", "ppo", "dpo", "kto"}


@dataclass
class Config:
    # model
    model_name_or_path: str = "builtin:tiny"
    adapter_name_or_path: str | None = None
    trust_remote_code: bool = False
    cache_dir: str | None = None
    model_revision: str = "main"
    quantization_bit: int | None = None
    flash_attn: str = "auto"
    infer_backend: str = "huggingface"
    infer_dtype: str = "auto"
    vllm_maxlen: int = 4096
    vllm_gpu_util: float = 0.9
    vllm_enforce_eager: bool = False
    vllm_max_lora_rank: int = 32
    # method
    stage: str = "sft"
    do_train: bool = True
    do_eval: bool = False
    do_predict: bool = False
    predict_with_generate: bool = False
    finetuning_type: str = "lora"
    lora_rank: int = 8
    lora_alpha: int | None = None
    lora_dropout: float = 0.0
    lora_target: str = "all"
    additional_target: str | None = None
    freeze_trainable_layers: int = 2
    # data
    dataset: str | None = None
    eval_dataset: str | None = None
    dataset_dir: str = "data"
    template: str | None = None
    cutoff_len: int = 2048
    max_samples: int | None = None
    val_size: float = 0.0
    overwrite_cache: bool = False
    preprocessing_num_workers: int | None = None
    packing: bool = False
    padding_free: bool = False
    group_by_length: bool = False
    train_on_prompt: bool = False
    mask_history: bool = False
    default_system: str | None = None
    enable_thinking: bool = True
    # output
    output_dir: str = "saves/run"
    overwrite_output_dir: bool = False
    logging_steps: int = 10
    save_steps: int = 500
    save_strategy: str = "steps"
    save_total_limit: int | None = None
    save_only_model: bool = False
    plot_loss: bool = False
    report_to: str = "none"
    # train
    per_device_train_batch_size: int = 1
    gradient_accumulation_steps: int = 1
    learning_rate: float = 5e-5
    num_train_epochs: float = 3.0
    max_steps: int = -1
    lr_scheduler_type: str = "linear"
    warmup_ratio: float = 0.0
    warmup_steps: int = 0
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    optim: str = "adamw_torch"
    bf16: bool = False
    fp16: bool = False
    use_cpu: bool = False
    seed: int = 42
    gradient_checkpointing: bool = False
    fused_ops: bool = True  # model/fused.py: leaner SwiGLU MLP backward and chunked LM-head loss, same values
    resume_from_checkpoint: str | None = None
    ddp_timeout: int = 1800
    dataloader_num_workers: int = 0
    deepspeed: str | None = None
    nproc_per_node: int | None = None
    # eval
    eval_strategy: str = "no"
    eval_steps: int | None = None
    per_device_eval_batch_size: int = 8
    # generation (eval, chat, api)
    max_new_tokens: int = 512
    do_sample: bool = True
    temperature: float = 0.95
    top_p: float = 0.7
    top_k: int = 50
    repetition_penalty: float = 1.0
    num_beams: int = 1
    # export
    export_dir: str | None = None
    export_size: float = 5.0
    export_device: str = "cpu"
    export_legacy_format: bool = False
    export_dtype: str = "auto"
    export_format: str = "hf"
    overwrite_export_dir: bool = False

    # where the config came from, for messages; not a YAML key
    source: str = field(default="<defaults>", repr=False, metadata={"internal": True})
    # keys the user set (YAML or command line), e.g. so evaluation is greedy unless do_sample was asked for
    explicit: frozenset = field(default=frozenset(), repr=False, metadata={"internal": True})

    @property
    def datasets(self) -> list[str]:
        return split_names(self.dataset)

    @property
    def eval_datasets(self) -> list[str]:
        return split_names(self.eval_dataset)

    @property
    def adapters(self) -> list[str]:
        return split_names(self.adapter_name_or_path)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if not f.metadata.get("internal")}

    def save(self, path: str | Path) -> None:
        """Write the resolved config (what actually ran) beside a result."""
        text = yaml.safe_dump(self.to_dict(), allow_unicode=True, sort_keys=False)
        write_text_atomic(Path(path), text)


CHOICES: dict[str, tuple[str, ...]] = {
    "stage": ("sft", *sorted(STAGES_NOT_YET)),
    "finetuning_type": ("lora", "freeze", "full"),
    "save_strategy": ("no", "steps", "epoch", "best"),
    "eval_strategy": ("no", "steps", "epoch"),
    "export_device": ("cpu", "auto"),
    "export_dtype": ("auto", "float32", "float16", "bfloat16"),
    "export_format": ("hf", "gguf", "gguf-f16", "gguf-f32"),
    "infer_backend": ("huggingface", "hf", "vllm"),
    "infer_dtype": ("auto", "float32", "float16", "bfloat16"),
    "flash_attn": ("auto", "disabled", "sdpa", "fa2", "eager"),
}

POSITIVE = {
    "cutoff_len",
    "per_device_train_batch_size",
    "per_device_eval_batch_size",
    "gradient_accumulation_steps",
    "lora_rank",
    "logging_steps",
    "save_steps",
    "max_new_tokens",
    "num_beams",
    "vllm_maxlen",
    "vllm_max_lora_rank",
}
NON_NEGATIVE = {
    "learning_rate",
    "num_train_epochs",
    "warmup_steps",
    "weight_decay",
    "max_grad_norm",
    "lora_dropout",
    "temperature",
    "top_p",
    "top_k",
    "val_size",
    "dataloader_num_workers",
    "freeze_trainable_layers",
    "export_size",
}

# Keys LLaMA-Factory configs carry that tuneboard accepts and ignores, with the reason shown to the user.
IGNORED_KEYS = {
    "ddp_find_unused_parameters": "handled automatically",
    "upcast_layernorm": "not needed",
    "use_fast_tokenizer": "tuneboard always uses the fast tokenizer",
    "disable_gradient_checkpointing": "use gradient_checkpointing",
    "include_num_input_tokens_seen": "always logged",
    "streaming": "not supported; datasets are read fully",
    "neat_packing": "packing always isolates samples",
    "enable_liger_kernel": "not used",
    "use_unsloth": "not used",
    "rope_scaling": "not used",
    "export_hub_model_id": "push to the hub yourself",
    "run_name": "not used",
}

KEY_ALIASES = {"evaluation_strategy": "eval_strategy", "lora_r": "lora_rank"}


def split_names(value: str | None) -> list[str]:
    if not value:
        return []
    return [part.strip() for part in str(value).split(",") if part.strip()]


def _field_types() -> dict[str, Any]:
    hints = typing.get_type_hints(Config)
    return {f.name: hints[f.name] for f in fields(Config) if not f.metadata.get("internal")}


def known_keys() -> list[str]:
    return list(_field_types())


def closest_key(key: str) -> str | None:
    match = difflib.get_close_matches(key, known_keys(), n=1, cutoff=0.6)
    return match[0] if match else None


def _coerce(key: str, value: Any, hint: Any, where: str) -> Any:
    """Turn a YAML or command-line value into the field's type, or say precisely why not."""
    args = typing.get_args(hint)
    optional = type(None) in args
    base = next((a for a in args if a is not type(None)), hint) if args else hint
    if value is None or (isinstance(value, str) and value.strip().lower() in ("null", "none", "~")):
        if optional or base is str:
            return None
        raise ConfigError(f"{where}: '{key}' must not be empty")
    if key == "resume_from_checkpoint" and isinstance(value, bool):
        return "true" if value else None
    if key == "val_size" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    try:
        if base is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("true", "yes", "1", "on"):
                return True
            if text in ("false", "no", "0", "off"):
                return False
            raise ValueError
        if base is int:
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(float(value)) if isinstance(value, str) and "e" in value.lower() else int(value)
        if base is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if base is str:
            if isinstance(value, (list, tuple)):
                return ",".join(str(v) for v in value)
            if isinstance(value, dict):
                raise ValueError
            return str(value)
    except (TypeError, ValueError):
        name = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}[base]
        raise ConfigError(f"{where}: '{key}' must be {name}, got {value!r}") from None
    return value


def _validate(cfg: Config, where: str) -> None:
    for key, allowed in CHOICES.items():
        value = getattr(cfg, key)
        if value not in allowed:
            close = difflib.get_close_matches(str(value), allowed, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"{where}: '{key}' is {value!r}; expected one of {', '.join(allowed)}{hint}")
    if cfg.stage in STAGES_NOT_YET:
        raise ConfigError(f"{where}: stage '{cfg.stage}' is not supported yet; tuneboard runs 'sft'")
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{where}: '{f.name}' must be a finite number, got {value}")
    for key in POSITIVE:
        if getattr(cfg, key) <= 0:
            raise ConfigError(f"{where}: '{key}' must be greater than 0, got {getattr(cfg, key)}")
    for key in NON_NEGATIVE:
        if getattr(cfg, key) < 0:
            raise ConfigError(f"{where}: '{key}' must not be negative, got {getattr(cfg, key)}")
    if cfg.learning_rate > 1:
        raise ConfigError(
            f"{where}: 'learning_rate' {cfg.learning_rate} is absurd; typical values are 1e-5 to 1e-3"
        )
    if cfg.lora_dropout >= 1:
        raise ConfigError(f"{where}: 'lora_dropout' is a probability below 1, got {cfg.lora_dropout}")
    if not 0 <= cfg.warmup_ratio < 1:
        raise ConfigError(f"{where}: 'warmup_ratio' must be in [0, 1), got {cfg.warmup_ratio}")
    if cfg.val_size >= 1 and not float(cfg.val_size).is_integer():
        raise ConfigError(f"{where}: 'val_size' is a fraction below 1 or a whole number of records")
    if cfg.top_p > 1:
        raise ConfigError(f"{where}: 'top_p' must be at most 1, got {cfg.top_p}")
    if not 0 < cfg.vllm_gpu_util <= 1:
        raise ConfigError(
            f"{where}: 'vllm_gpu_util' is a fraction of GPU memory in (0, 1], got {cfg.vllm_gpu_util}"
        )
    if cfg.quantization_bit not in (None, 4, 8):
        raise ConfigError(f"{where}: 'quantization_bit' must be 4 or 8, got {cfg.quantization_bit}")
    if cfg.bf16 and cfg.fp16:
        raise ConfigError(f"{where}: set only one of 'bf16' and 'fp16'")
    if cfg.max_samples is not None and cfg.max_samples <= 0:
        raise ConfigError(f"{where}: 'max_samples' must be greater than 0, got {cfg.max_samples}")
    if cfg.lora_alpha is None:
        cfg.lora_alpha = cfg.lora_rank * 2


def from_dict(data: dict[str, Any], where: str = "<config>", strict: bool = True) -> tuple[Config, list[str]]:
    """Build a validated Config; returns it with notes about accepted-but-ignored keys."""
    types = _field_types()
    values: dict[str, Any] = {}
    notes: list[str] = []
    for raw_key, value in data.items():
        key = KEY_ALIASES.get(str(raw_key), str(raw_key))
        if key in IGNORED_KEYS:
            notes.append(f"{where}: '{key}' is ignored ({IGNORED_KEYS[key]})")
            continue
        if key not in types:
            if not strict:
                continue
            close = closest_key(key)
            hint = f"; did you mean '{close}'?" if close else ""
            raise ConfigError(f"{where}: unknown key '{raw_key}'{hint}")
        values[key] = _coerce(key, value, types[key], where)
    cfg = Config(**values, source=where, explicit=frozenset(values))
    _validate(cfg, where)
    return cfg, notes


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """`key=value` strings from the command line; values are read as YAML scalars (so 1e-4, true, null work)."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"command line: '{item}' is not key=value")
        key, _, raw = item.partition("=")
        key = key.strip().lstrip("-").replace("-", "_")
        try:
            out[key] = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            out[key] = raw
        if isinstance(out[key], dict):  # `default_system=Note: be brief` is text, not a mapping
            out[key] = raw
    return out


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: config file not found")
    if path.is_dir():
        raise ConfigError(f"{path}: is a directory, expected a YAML config file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        pos = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}: invalid YAML{pos}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: expected a mapping of key: value at the top level, got {type(data).__name__}"
        )
    return data


def load(path: str | Path | None = None, overrides: list[str] | None = None) -> tuple[Config, list[str]]:
    """YAML file + key=value overrides -> validated Config (overrides win)."""
    data: dict[str, Any] = read_yaml(path) if path else {}
    data.update(parse_overrides(overrides or []))
    where = str(path) if path else "command line"
    return from_dict(data, where)


def replace(cfg: Config, **changes: Any) -> Config:
    return dataclasses.replace(cfg, **changes)

"""Typed settings: one flat dataclass whose field names are the YAML keys and the key=value overrides; each
key declared once, with its group, help text and choices. Values are typed and validated here, in one place
(keys.py reads the YAML and key=value text and holds LLaMA-Factory's other key names).

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
from .keys import GROUPS, IGNORED_KEYS, KEY_ALIASES, group, parse_overrides, read_yaml
from .method_keys import JSON_KEYS, MethodKeys, as_json_text, refused
from .method_keys import validate as validate_methods

STAGES = ("sft", "pt", "dpo", "kto", "rm")
STAGES_NOT_YET = {"ppo"}
DTYPES = ("auto", "float32", "float16", "bfloat16")

# one field maker per group: `name: type = _train(default, help, choices)` is the whole declaration of a key
_model, _method, _data, _output, _train, _eval, _gen, _api, _export = map(group, GROUPS)


@dataclass
class Config(MethodKeys):  # the method keys (DoRA, PiSSA, LoRA+, OFT, GaLore, ...) live in method_keys.py
    model_name_or_path: str = _model(
        "builtin:tiny",
        "hub id, local directory, a training output_dir, or builtin:tiny (the bundled demo model)",
    )
    adapter_name_or_path: str | None = _model(None, "LoRA adapter directories to load, comma-separated")
    trust_remote_code: bool = _model(False, "run Python code shipped with the model (only if trusted)")
    cache_dir: str | None = _model(None, "where downloaded models are kept (default: the hub's own cache)")
    model_revision: str = _model("main", "branch, tag or commit of the model on the hub")
    quantization_bit: int | None = _model(None, "4 or 8: load the base model quantized (QLoRA, CUDA)")
    flash_attn: str = _model(
        "auto",
        "attention kernel: auto, sdpa, disabled (PyTorch SDPA), fa2 (flash-attn, CUDA), eager",
        ("auto", "disabled", "sdpa", "fa2", "eager"),
    )
    infer_backend: str = _model(
        "huggingface", "engine of eval, chat and api: huggingface (hf) or vllm", ("huggingface", "hf", "vllm")
    )
    infer_dtype: str = _model(
        "auto", "weights dtype for inference; auto: bf16/fp16 on GPU, fp32 on CPU", DTYPES
    )
    vllm_maxlen: int = _model(4096, "vLLM: longest sequence (prompt + reply) in tokens")
    vllm_gpu_util: float = _model(0.9, "vLLM: fraction of GPU memory it may take, in (0, 1]")
    vllm_enforce_eager: bool = _model(False, "vLLM: no CUDA graphs (less memory, slower)")
    vllm_max_lora_rank: int = _model(32, "vLLM: largest LoRA rank it accepts")
    stage: str = _method(
        "sft",
        "training stage: sft (supervised fine-tuning), pt (continued pre-training on plain text), dpo "
        "(preference pairs), kto (replies tagged desirable or not), rm (reward model on preference pairs)",
        (*STAGES, *sorted(STAGES_NOT_YET - set(STAGES))),
    )
    do_train: bool = _method(
        True,
        "train (false: only predict with an existing model); as in LLaMA-Factory, a config that sets "
        "do_predict and not do_train only predicts",
    )
    do_eval: bool = _method(False, "compute the eval loss during training (see eval_strategy)")
    do_predict: bool = _method(False, "generate on the eval datasets and score the replies")
    predict_with_generate: bool = _method(False, "predict by generating replies (BLEU-4, ROUGE, accuracy)")
    finetuning_type: str = _method(
        "lora",
        "lora (small adapters), oft (orthogonal adapters), freeze (last layers) or full (every weight)",
        ("lora", "oft", "freeze", "full"),
    )
    lora_rank: int = _method(8, "LoRA rank r: width of the adapter matrices (alias lora_r)")
    lora_alpha: int | None = _method(None, "LoRA scale alpha (default: 2 x lora_rank)")
    lora_dropout: float = _method(0.0, "dropout on the LoRA input, a probability below 1")
    lora_target: str = _method(
        "all", "modules given adapters: all (every linear layer) or names such as q_proj,v_proj"
    )
    additional_target: str | None = _method(None, "extra modules trained in full and saved with the adapter")
    freeze_trainable_layers: int = _method(2, "freeze: how many of the last layers are trained")
    dataset: str | None = _data(
        None, "training datasets: names in dataset_info.json or data files, comma-separated"
    )
    eval_dataset: str | None = _data(None, "evaluation datasets, in the same form as dataset")
    dataset_dir: str = _data("data", "directory of dataset_info.json and the data files")
    template: str | None = _data(
        None, "chat template (see `tuneboard data templates`); auto: the tokenizer's own"
    )
    cutoff_len: int = _data(2048, "longest sample in tokens; longer ones are truncated")
    max_samples: int | None = _data(None, "read at most this many records of each dataset")
    val_size: float = _data(0.0, "held out for evaluation: a fraction below 1 or a record count")
    overwrite_cache: bool = _data(False, "tokenize again instead of reading the cached tokenized set")
    preprocessing_num_workers: int | None = _data(None, "processes that tokenize (at most one per CPU core)")
    packing: bool = _data(False, "pack several samples into each cutoff_len sequence (attention kept apart)")
    padding_free: bool = _data(False, "batches without padding: samples end to end (attention kept apart)")
    group_by_length: bool = _data(False, "batch samples of similar length together (less padding)")
    train_on_prompt: bool = _data(False, "compute the loss on prompts too, not only on replies")
    mask_history: bool = _data(False, "train only the last reply of a multi-turn conversation")
    default_system: str | None = _data(None, "system prompt for records that have none")
    enable_thinking: bool = _data(True, "reasoning templates (qwen3, auto): thinking mode on")
    fast_bpe: bool = _data(
        True, "tokenize large datasets with fastokens (same ids, far faster); false: tokenizers only"
    )
    output_dir: str = _output("saves/run", "where the run writes its adapter or model, checkpoints and logs")
    overwrite_output_dir: bool = _output(False, "replace a finished run in output_dir")
    logging_steps: int = _output(10, "log the loss every this many steps")
    save_steps: int = _output(500, "save_strategy steps: a checkpoint every this many steps")
    save_strategy: str = _output(
        "steps",
        "when checkpoints are saved: no, steps, epoch or best (eval metric)",
        ("no", "steps", "epoch", "best"),
    )
    save_total_limit: int | None = _output(None, "keep at most this many checkpoints (the oldest go)")
    save_only_model: bool = _output(False, "checkpoints without optimizer state (smaller; no exact resume)")
    plot_loss: bool = _output(False, "draw the loss curves into output_dir at the end")
    report_to: str = _output("none", "experiment trackers: tensorboard, wandb, ... or none")
    per_device_train_batch_size: int = _train(1, "samples per device in each forward pass")
    gradient_accumulation_steps: int = _train(
        1, "forward passes per optimizer step (batch = per-device batch x this x GPUs)"
    )
    learning_rate: float = _train(5e-5, "peak learning rate (typically 1e-4 for LoRA, 1e-5 for full)")
    num_train_epochs: float = _train(3.0, "passes over the training set (may be fractional)")
    max_steps: int = _train(-1, "stop after this many optimizer steps (-1: train num_train_epochs)")
    lr_scheduler_type: str = _train("linear", "schedule: linear, cosine, constant, ... (Hugging Face names)")
    warmup_ratio: float = _train(0.0, "part of the steps spent warming the learning rate up, in [0, 1)")
    warmup_steps: int = _train(0, "warm-up steps (win over warmup_ratio when above 0)")
    weight_decay: float = _train(0.0, "AdamW weight decay")
    max_grad_norm: float = _train(1.0, "clip gradients to this norm")
    optim: str = _train("adamw_torch", "optimizer (Hugging Face names: adamw_torch, adamw_8bit, sgd, ...)")
    bf16: bool = _train(False, "bfloat16 mixed precision (a GPU that supports it)")
    fp16: bool = _train(False, "float16 mixed precision (GPU)")
    use_cpu: bool = _train(False, "run on the CPU even when a GPU is present")
    seed: int = _train(42, "random seed of shuffling, splits and initialisation")
    gradient_checkpointing: bool = _train(
        False, "recompute activations in the backward pass (less memory, slower)"
    )
    fused_ops: bool = _train(True, "leaner SwiGLU backward, chunked LM-head loss (same values)")
    resume_from_checkpoint: str | None = _train(
        None, "true: continue from output_dir's last checkpoint; or a checkpoint directory"
    )
    ddp_timeout: int = _train(1800, "seconds distributed processes wait for each other")
    dataloader_num_workers: int = _train(0, "processes that load batches (0: the training process)")
    deepspeed: str | None = _train(None, "DeepSpeed JSON config file (multi-GPU)")
    nproc_per_node: int | None = _train(None, "processes (GPUs) to train on; default: every visible GPU")
    eval_strategy: str = _eval(
        "no", "when the eval loss is computed: no, steps or epoch", ("no", "steps", "epoch")
    )
    eval_steps: int | None = _eval(None, "eval_strategy steps: every this many steps")
    per_device_eval_batch_size: int = _eval(8, "samples per device in evaluation and prediction batches")
    max_new_tokens: int = _gen(512, "longest reply in tokens (eval, chat, api)")
    do_sample: bool = _gen(True, "sample replies (false: greedy; evaluation is greedy unless this is set)")
    temperature: float = _gen(0.95, "sampling temperature (higher: more varied)")
    top_p: float = _gen(0.7, "nucleus sampling: the most likely tokens up to this total probability")
    top_k: int = _gen(50, "sample from the k most likely tokens (0: no limit)")
    repetition_penalty: float = _gen(1.0, "above 1 discourages repeating tokens")
    num_beams: int = _gen(1, "beam search width (1: none)")
    max_concurrent: int = _api(
        16, "tuneboard api, web chat: replies generated together, sharing each forward pass (the batch size)"
    )
    max_waiting: int = _api(
        64, "tuneboard api: requests queued beyond max_concurrent; the rest are answered 429 with Retry-After"
    )
    api_allowed_hosts: str | None = _api(
        None,
        "tuneboard api: Host names it answers besides localhost and its bind address, comma-separated "
        "(*: any name, which lets a web page reach a keyless API through DNS rebinding)",
    )
    export_dir: str | None = _export(None, "directory the exported model is written to")
    export_size: float = _export(5.0, "largest weights shard in GB")
    export_device: str = _export(
        "cpu", "where adapters are merged: cpu, or auto (a GPU if any)", ("cpu", "auto")
    )
    export_legacy_format: bool = _export(False, "write .bin (pickle) weights instead of safetensors")
    export_dtype: str = _export("auto", "dtype of the exported weights; auto: the model's own", DTYPES)
    export_format: str = _export(
        "hf",
        "hf (a model directory), or one GGUF file for llama.cpp / Ollama: gguf (f16), gguf-f32, gguf-f16, "
        "or quantized gguf-q8_0 / q5_1 / q5_0 / q4_1 / q4_0 (k-quants: convert with llama.cpp's llama-quantize)",
        (
            "hf",
            "gguf",
            "gguf-f16",
            "gguf-f32",
            "gguf-q8_0",
            "gguf-q5_1",
            "gguf-q5_0",
            "gguf-q4_1",
            "gguf-q4_0",
        ),
    )
    overwrite_export_dir: bool = _export(False, "replace an existing export_dir")

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


KEYS = {f.name: f for f in fields(Config) if not f.metadata.get("internal")}  # every YAML key, in order
CHOICES = {name: f.metadata["choices"] for name, f in KEYS.items() if f.metadata["choices"]}

POSITIVE = {
    "cutoff_len", "per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps",
    "lora_rank", "logging_steps", "save_steps", "max_new_tokens", "num_beams", "vllm_maxlen",
    "vllm_max_lora_rank", "max_concurrent",
}  # fmt: skip
NON_NEGATIVE = {
    "learning_rate", "num_train_epochs", "warmup_steps", "weight_decay", "max_grad_norm", "lora_dropout",
    "temperature", "top_p", "top_k", "val_size", "dataloader_num_workers", "freeze_trainable_layers",
    "export_size", "max_waiting",
}  # fmt: skip


def split_names(value: str | None) -> list[str]:
    if not value:
        return []
    return [part.strip() for part in str(value).split(",") if part.strip()]


def known_keys() -> list[str]:
    return list(KEYS)


def key_help(key: str) -> str:
    """The one-line help text of a YAML key (the web UI's fallback tooltip)."""
    return KEYS[key].metadata["help"]


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
    if key == "resume_from_checkpoint" and str(value).lower() in ("true", "yes", "on", "false", "no", "off"):
        return "true" if str(value).lower() in ("true", "yes", "on") else None
    if key in JSON_KEYS:
        return as_json_text(key, value, where)
    if key == "val_size" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if base is str and isinstance(value, bool) and key in CHOICES:  # `save_strategy: false`, from a dict
        words = ("yes", "on", "true") if value else ("no", "off", "false")
        return next((w for w in words if w in CHOICES[key]), words[-1])
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
    except (TypeError, ValueError, OverflowError):  # OverflowError: int(float("1e400"))
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
        raise ConfigError(
            f"{where}: stage '{cfg.stage}' is not supported yet; tuneboard runs "
            + ", ".join(s for s in STAGES if s not in STAGES_NOT_YET)
        )
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
    if cfg.nproc_per_node is not None and cfg.nproc_per_node < 1:
        raise ConfigError(f"{where}: 'nproc_per_node' must be at least 1, got {cfg.nproc_per_node}")
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
    validate_methods(cfg, where)
    if cfg.lora_alpha is None:
        cfg.lora_alpha = cfg.lora_rank * 2


def from_dict(data: dict[str, Any], where: str = "<config>", strict: bool = True) -> tuple[Config, list[str]]:
    """Build a validated Config; returns it with notes about accepted-but-ignored keys."""
    types = typing.get_type_hints(Config)
    values: dict[str, Any] = {}
    notes: list[str] = []
    for raw_key, value in data.items():
        key = KEY_ALIASES.get(str(raw_key), str(raw_key))
        if key in IGNORED_KEYS:
            notes.append(f"{where}: '{key}' is ignored ({IGNORED_KEYS[key]})")
            continue
        note = None if key in KEYS else refused(key, value, where)
        if note:
            notes.append(note)
            continue
        if key not in KEYS:
            if not strict:
                continue
            close = closest_key(key)
            hint = f"; did you mean '{close}'?" if close else ""
            raise ConfigError(f"{where}: unknown key '{raw_key}'{hint}")
        values[key] = _coerce(key, value, types[key], where)
    explicit = frozenset(values)
    if values.get("do_predict") and "do_train" not in values:  # LLaMA-Factory's predict configs (nlg_eval)
        values["do_train"] = False
    cfg = Config(**values, source=where, explicit=explicit)
    _validate(cfg, where)
    return cfg, notes


def load(path: str | Path | None = None, overrides: list[str] | None = None) -> tuple[Config, list[str]]:
    """YAML file + key=value overrides -> validated Config (overrides win)."""
    data: dict[str, Any] = read_yaml(path) if path else {}
    data.update(parse_overrides(overrides or []))
    where = str(path) if path else "command line"
    return from_dict(data, where)


def replace(cfg: Config, **changes: Any) -> Config:
    return dataclasses.replace(cfg, **changes)

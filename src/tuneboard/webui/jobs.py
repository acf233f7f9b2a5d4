"""The YAML a web UI action runs: form values -> LLaMA-Factory-style config -> validated -> written.

Interface layer helper (no gradio). Validation is config.from_dict's (the one place it lives); paths are
confined to the workspace and written relative to it (the job runs with the workspace as its cwd): every
path-valued key, the form's and the extra-settings box's alike (`confine`).
"""

from __future__ import annotations

import dataclasses
import time
import typing
from pathlib import Path
from typing import Any

import yaml

from ..config import CHOICES, Config, from_dict, split_names
from ..data.registry import looks_like_path, read_registry
from ..errors import ConfigError, DataError
from ..files import write_text_atomic
from ..hub import BUILTIN_PREFIX
from .paths import OutsideRoot, Workspace

SECTIONS = (
    ("model", ("model_name_or_path", "adapter_name_or_path", "template", "trust_remote_code")),
    ("method", ("stage", "do_train", "do_predict", "predict_with_generate", "finetuning_type")),
    ("dataset", ("dataset", "eval_dataset", "dataset_dir", "cutoff_len", "max_samples", "val_size")),
    ("output", ("output_dir", "export_dir")),
)


PREF_STAGES = ("dpo", "kto")  # the stages that read pref_beta (pref_loss: dpo only)
LORA_SWITCHES = ("use_dora", "use_rslora", "pissa_init")  # LoRA variants the Train tab offers


def stamp() -> str:
    return time.strftime("%Y-%m-%d-%H-%M-%S")


def parse_extra(text: str | None) -> dict[str, Any]:
    """The 'extra settings' box: YAML `key: value` lines (any config key)."""
    if not text or not text.strip():
        return {}
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"extra settings: invalid YAML: {getattr(exc, 'problem', None) or exc}") from None
    if not isinstance(data, dict):
        raise ConfigError("extra settings: expected `key: value` lines")
    return data


# text settings that are not paths; every other text setting names a file or directory and is confined
TEXT_KEYS = {"template", "default_system", "lora_target", "additional_target", "report_to", "model_revision"}
TEXT_KEYS |= {"optim", "lr_scheduler_type", "optim_args", "lr_scheduler_kwargs"}  # read by transformers
TEXT_KEYS |= {"oft_target", "galore_target", "apollo_target"}  # module names
TEXT_KEYS |= {"freeze_trainable_modules", "freeze_extra_modules"}
TEXT_KEYS |= {"api_allowed_hosts"}  # host names
TEXT_KEYS |= {"rope_scaling"}  # a RoPE type
MODEL_KEYS = {"model_name_or_path"}  # a builtin name or a hub id 'org/name' when no such path exists
DATASET_KEYS = {"dataset", "eval_dataset"}  # registered names, or data file paths


def confined_keys() -> set[str]:
    """The config keys whose text the job reads as a path (a key added to Config later is one by default)."""
    hints = typing.get_type_hints(Config)
    text = {
        f.name
        for f in dataclasses.fields(Config)
        if str in (hints[f.name], *typing.get_args(hints[f.name])) and not f.metadata.get("internal")
    }
    return text - TEXT_KEYS - set(CHOICES)


def confine(ws: Workspace, data: dict[str, Any]) -> None:
    """Every path the job would read or write, whichever key holds it, lies in the workspace (OutsideRoot)."""
    for key in sorted(confined_keys() & set(data), key=lambda k: (k in DATASET_KEYS, k)):  # dataset_dir first
        value = data[key]
        if isinstance(value, bool) or str(value).strip().lower() in ("", "none", "null", "true", "false"):
            continue  # unset, or resume_from_checkpoint: true
        text = ",".join(map(str, value)) if isinstance(value, list) else str(value).strip()
        try:
            _confine_one(ws, key, text, str(data.get("dataset_dir") or "data"))
        except OutsideRoot as exc:
            raise OutsideRoot(f"{key} {exc.path}", ws.root) from None


def _confine_one(ws: Workspace, key: str, text: str, dataset_dir: str) -> None:
    if key in DATASET_KEYS:
        _confine_datasets(ws, split_names(text), dataset_dir)
    elif key in MODEL_KEYS:
        hub_id = text.count("/") == 1 and not text.startswith(("/", ".", "~"))
        if not text.startswith(BUILTIN_PREFIX) and not (hub_id and not (ws.root / text).exists()):
            ws.resolve(text)
    elif key == "adapter_name_or_path":
        for name in split_names(text):
            ws.resolve(name)
    else:
        ws.resolve(text)


def _confine_datasets(ws: Workspace, names: list[str], dataset_dir: str) -> None:
    """A registered name reads a file confined to dataset_dir (registry.py); a path is read from the job's
    cwd (the root) or from dataset_dir: both places must be inside."""
    base = ws.resolve(dataset_dir)
    try:
        info = read_registry(base)
    except DataError:
        info = {}
    for name in names:
        if name in info or not looks_like_path(name):
            continue
        ws.resolve(name)
        if not Path(name).expanduser().is_absolute():
            ws.resolve(base / name)


def validate(data: dict[str, Any]) -> Config:
    cfg, _ = from_dict(data, where="web UI")
    return cfg


def to_yaml(data: dict[str, Any]) -> str:
    """The config as LLaMA-Factory's examples lay it out: ### sections, keys in a fixed order."""
    placed: set[str] = set()
    chunks = []
    for title, keys in SECTIONS:
        part = {k: data[k] for k in keys if k in data and data[k] is not None}
        placed.update(part)
        if part:
            chunks.append(f"### {title}\n" + yaml.safe_dump(part, allow_unicode=True, sort_keys=False))
    rest = {k: v for k, v in data.items() if k not in placed and v is not None}
    if rest:
        chunks.append("### settings\n" + yaml.safe_dump(rest, allow_unicode=True, sort_keys=False))
    return "\n".join(chunks)


def write(ws: Workspace, path: str, data: dict[str, Any]) -> Path:
    """Validate, then write the YAML atomically at a confined path; returns the real path."""
    validate(data)
    confine(ws, data)
    target = ws.resolve(path)
    if target.suffix not in (".yaml", ".yml"):
        raise ConfigError(f"{path}: a config file name ends with .yaml")
    write_text_atomic(target, to_yaml(data))
    return target


def command_line(kind: str, config: str, modelscope: bool) -> str:
    """What to type in a terminal (in the workspace) to run the same job."""
    prefix = "USE_MODELSCOPE_HUB=1 " if modelscope else ""
    return f"{prefix}tuneboard {kind} {config}"


def hub_env(modelscope: bool) -> dict[str, str | None]:
    """The standard switch for the job's model and dataset downloads (set, or removed)."""
    return {"USE_MODELSCOPE_HUB": "1" if modelscope else None}


def train_config(
    ws: Workspace, model: dict[str, Any], form: dict[str, Any], output_dir: str, extra: str | None = None
) -> dict[str, Any]:
    """Train tab values -> config. `model` is lookup.model_settings(...)."""
    datasets = form.get("datasets") or []
    if not datasets:
        raise ConfigError("choose at least one dataset to train on")
    ft = model["finetuning_type"]
    data: dict[str, Any] = dict(model)
    stage = form.get("stage") or "sft"
    data.update(stage=stage, do_train=True)
    if stage in PREF_STAGES:
        data["pref_beta"] = float(form.get("pref_beta") or 0.1)
        if stage == "dpo":
            data["pref_loss"] = form.get("pref_loss") or "sigmoid"
    if ft == "lora":
        data.update(
            lora_rank=int(form["lora_rank"]),
            lora_alpha=int(form["lora_alpha"]) if form.get("lora_alpha") else None,
            lora_dropout=float(form["lora_dropout"]),
            lora_target=form.get("lora_target") or "all",
        )
        data.update({k: True for k in LORA_SWITCHES if form.get(k)})
        if form.get("loraplus_lr_ratio"):
            data["loraplus_lr_ratio"] = float(form["loraplus_lr_ratio"])
    elif ft == "freeze":
        data["freeze_trainable_layers"] = int(form["freeze_trainable_layers"])
    data.update(
        dataset=",".join(datasets),
        dataset_dir=ws.rel(form.get("dataset_dir") or "data"),
        cutoff_len=int(form["cutoff_len"]),
        max_samples=int(form["max_samples"]) if form.get("max_samples") else None,
        val_size=float(form.get("val_size") or 0) or None,
        output_dir=ws.rel(output_dir),
        logging_steps=int(form["logging_steps"]),
        save_steps=int(form["save_steps"]),
        plot_loss=True,
        per_device_train_batch_size=int(form["per_device_train_batch_size"]),
        gradient_accumulation_steps=int(form["gradient_accumulation_steps"]),
        learning_rate=float(form["learning_rate"]),
        weight_decay=float(form.get("weight_decay") or 0) or None,
        num_train_epochs=float(form["num_train_epochs"]),
        max_steps=int(form["max_steps"]) if form.get("max_steps") and int(form["max_steps"]) > 0 else None,
        lr_scheduler_type=form.get("lr_scheduler_type") or "cosine",
        warmup_ratio=float(form.get("warmup_ratio") or 0) or None,
        seed=int(form.get("seed") or 42),
    )
    compute = form.get("compute_type") or "fp32"
    if compute in ("bf16", "fp16"):
        data[compute] = True
    if form.get("packing"):
        data["packing"] = True
    if form.get("train_on_prompt"):
        data["train_on_prompt"] = True
    if form.get("neftune_noise_alpha"):
        data["neftune_noise_alpha"] = float(form["neftune_noise_alpha"])
    if form.get("resume"):
        data["resume_from_checkpoint"] = True
    data.update(parse_extra(extra))
    data = {k: v for k, v in data.items() if v is not None}
    confine(ws, data)
    return data


def eval_config(
    ws: Workspace, model: dict[str, Any], form: dict[str, Any], output_dir: str
) -> dict[str, Any]:
    datasets = form.get("datasets") or []
    if not datasets:
        raise ConfigError("choose at least one dataset to evaluate on")
    data: dict[str, Any] = dict(model)
    data.update(
        stage="sft",
        do_train=False,
        do_predict=True,
        predict_with_generate=True,
        eval_dataset=",".join(datasets),
        dataset_dir=ws.rel(form.get("dataset_dir") or "data"),
        cutoff_len=int(form["cutoff_len"]),
        max_samples=int(form["max_samples"]) if form.get("max_samples") else None,
        output_dir=ws.rel(output_dir),
        per_device_eval_batch_size=int(form["per_device_eval_batch_size"]),
        max_new_tokens=int(form["max_new_tokens"]),
    )
    if form.get("do_sample"):
        data.update(do_sample=True, temperature=float(form["temperature"]), top_p=float(form["top_p"]))
    return {k: v for k, v in data.items() if v is not None}


def export_config(ws: Workspace, model: dict[str, Any], form: dict[str, Any]) -> dict[str, Any]:
    if not form.get("export_dir"):
        raise ConfigError("set the export directory")
    data: dict[str, Any] = dict(model)
    data.pop("finetuning_type", None)
    data.update(
        export_dir=ws.rel(form["export_dir"]),
        export_size=float(form["export_size"]),
        export_device=form.get("export_device") or "cpu",
        export_format=form.get("export_format") or "hf",
        export_dtype=form.get("export_dtype") or "auto",
    )
    if form.get("overwrite_export_dir"):
        data["overwrite_export_dir"] = True
    return data

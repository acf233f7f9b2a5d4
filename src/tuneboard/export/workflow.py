"""`tuneboard export`: merge adapters into the base and write a plain Hugging Face model directory
(sharded safetensors, tokenizer with the training chat template, generation config, model card, Modelfile),
or a GGUF file. Written under a temporary name and renamed when complete.

Inference layer: uses model/ (loading) and data/templates (chat template); cli.py calls `run`.
"""

from __future__ import annotations

import fnmatch
import json
import os
from pathlib import Path
from typing import Any

import yaml

from .. import rundir
from ..config import Config
from ..errors import TuneboardError
from ..files import atomic_dir, unwritable_reason
from .ollama import modelfile

# what an export writes (HF model, tokenizer and remote code, or GGUF; card and Modelfile): only a directory
# holding nothing else, a model among it, is a previous export that overwrite_export_dir may replace
EXPORT_FILES = (
    "README.md", "Modelfile", "config.json", "generation_config.json", "*.safetensors", "*.safetensors.index.json",
    "pytorch_model*.bin", "pytorch_model.bin.index.json", "tokenizer*.json", "special_tokens_map.json",
    "added_tokens.json", "vocab.json", "vocab.txt", "merges.txt", "*.model", "*.tiktoken", "chat_template.jinja",
    "chat_template.json", "configuration_*.py", "modeling_*.py", "tokenization_*.py", "*.gguf",
)  # fmt: skip


def check_target(cfg: Config) -> Path:
    """export_dir, checked before anything is loaded: a new or empty directory, or (with overwrite_export_dir)
    a previous export; never the current directory or one holding it (renamed away under the user)."""
    if not cfg.export_dir:
        raise TuneboardError(f"{cfg.source}: set export_dir (where the exported model goes)")
    target = Path(cfg.export_dir)
    real, here = target.resolve(), Path.cwd().resolve()
    if real == here or real in here.parents:
        raise TuneboardError(
            f"export_dir {target}: is the current directory or holds it; name a new directory for the export"
        )
    if target.exists() and not target.is_dir():
        raise TuneboardError(f"export_dir {target}: exists and is not a directory")
    entries = sorted(os.listdir(target)) if target.is_dir() else []
    if entries and not cfg.overwrite_export_dir:
        raise TuneboardError(
            f"export_dir {target}: already exists; set overwrite_export_dir: true to replace it"
        )
    foreign = [
        n for n in entries if (target / n).is_dir() or not any(fnmatch.fnmatch(n, p) for p in EXPORT_FILES)
    ]
    if entries and (foreign or not any(n == "config.json" or n.endswith(".gguf") for n in entries)):
        held = f" (it holds {', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''})" if foreign else ""
        raise TuneboardError(
            f"export_dir {target}: is not a previous export{held}; overwrite_export_dir replaces only an "
            "export's own directory: choose a new directory"
        )
    reason = unwritable_reason(target.parent)
    if reason:  # found before the model is loaded
        raise TuneboardError(f"export_dir {target}: cannot write there ({reason})")
    return real


def _refuse_quantized(cfg: Config, base_dir: Path) -> None:
    conf = json.loads((base_dir / "config.json").read_text(encoding="utf-8"))
    if cfg.quantization_bit or conf.get("quantization_config"):
        raise TuneboardError(
            "cannot merge an adapter into a quantized base model: the merged weights would be rounded again. "
            "Export from the unquantized base instead (remove quantization_bit, point model_name_or_path at "
            "the original fp16/bf16 model) and keep adapter_name_or_path"
        )


def _dtype(cfg: Config, saved: str | None) -> Any:
    """export_dtype, or with auto the dtype the base checkpoint was saved in (the merge itself runs in fp32,
    so the loaded model's own dtype says nothing)."""
    import torch

    name = cfg.export_dtype if cfg.export_dtype != "auto" else saved
    return getattr(torch, name) if name in ("float32", "float16", "bfloat16") else torch.float32


def trained_run(cfg: Config, adapters: list[Path]) -> dict[str, Any]:
    """What the card reports about training: the last adapter's (or model dir's) saved config and results."""
    info: dict[str, Any] = {}
    candidates = [*adapters, Path(cfg.model_name_or_path)]
    for d in candidates:
        conf = rundir.saved_config(d)
        if conf is not None:
            info["config"] = conf
            results = rundir.read_results(d)
            if results is not None:
                info["results"] = results
            break
    return info


def model_card(base: str, method: str, run: dict[str, Any], template: str, weights: str) -> str:
    conf = run.get("config", {})
    results = run.get("results", {})
    lines = [
        "---",
        f"base_model: {base}",
        "library_name: transformers",
        f"tags: [tuneboard, {conf.get('stage', 'sft')}]",
        "---",
        f"# Fine-tuned {base}",
        "",
        f"- method: {method}",
        f"- weights: {weights}",
        f"- datasets: {conf.get('dataset', 'unknown')}",
        f"- chat template: {template} (saved in the tokenizer: `apply_chat_template` renders the training format)",
        "",
        "## Final metrics",
        "",
    ]
    lines += [f"- {k}: {v}" for k, v in results.items()] or ["- (none recorded)"]
    lines += [
        "",
        "## Training config",
        "",
        "```yaml",
        yaml.safe_dump(conf, allow_unicode=True).strip(),
        "```",
        "",
    ]
    return "\n".join(lines)


def run(cfg: Config) -> Path:
    import torch

    from ..data.templates.hf_jinja import to_jinja
    from ..data.templates.resolve import load_template
    from ..model.adapters import merge_adapters
    from ..model.load import load_model, load_tokenizer, resolve_source, saved_dtype, stop_token_ids

    target = check_target(cfg)
    source = resolve_source(cfg)
    _refuse_quantized(cfg, source.base_dir)
    tokenizer = load_tokenizer(source.base_dir, cfg)
    template = load_template(cfg.template, tokenizer, source.base_dir, source.adapters)
    device_map = "auto" if cfg.export_device == "auto" and torch.cuda.is_available() else None
    model = load_model(source.base_dir, cfg, torch.float32, device_map, adapters=source.adapters)
    model = merge_adapters(model, source.adapters)
    model = model.to(_dtype(cfg, saved_dtype(source.base_dir)))
    if hasattr(template, "name"):
        tokenizer.chat_template = to_jinja(template)
    stops = stop_token_ids(tokenizer, template)
    gc = model.generation_config
    gc.eos_token_id = stops if len(stops) > 1 else stops[0]
    gc.pad_token_id = tokenizer.pad_token_id
    method = "lora (merged)" if source.adapters else "full or freeze fine-tuning (re-saved)"
    run_info = trained_run(cfg, source.adapters)
    template_name = getattr(template, "name", "auto")
    fmt = cfg.export_format
    with atomic_dir(target, overwrite=cfg.overwrite_export_dir) as tmp:
        if fmt.startswith("gguf"):
            from .gguf import write_gguf

            # gguf-<type> names the weight type; plain gguf follows export_dtype (f16 unless float32)
            dtype = fmt.removeprefix("gguf").removeprefix("-") or (
                "f32" if cfg.export_dtype == "float32" else "f16"
            )
            name = f"{target.name}-{dtype}.gguf"
            write_gguf(model, tokenizer, template, tmp / name, dtype)
            weights = f"GGUF, matrices in {dtype}, norms in f32"
        else:
            name = ""
            model.save_pretrained(
                tmp,
                max_shard_size=f"{int(cfg.export_size * 1024)}MB",
                safe_serialization=not cfg.export_legacy_format,
            )
            tokenizer.save_pretrained(tmp)
            weights = f"{str(model.dtype).removeprefix('torch.')} safetensors"
        (tmp / "README.md").write_text(
            model_card(source.base_name, method, run_info, template_name, weights), encoding="utf-8"
        )
        words = [w for w in getattr(template, "stop_words", ()) if w]
        (tmp / "Modelfile").write_text(modelfile(template, words, name), encoding="utf-8")
    print(f"exported to {target}: " + ", ".join(sorted(p.name for p in target.iterdir())))
    return target

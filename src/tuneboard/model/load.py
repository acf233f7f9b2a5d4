"""Model + tokenizer + template from a name: `builtin:tiny`, a local directory or .gguf file, a hub id, or a
training output.

Model layer. dtype, device and quantization are decided here; adapters.py attaches LoRA / freeze / full.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import hub
from ..config import Config
from ..data.templates.resolve import load_template
from ..errors import TuneboardError
from . import gguf, rope, tiny
from .adapters import merge_adapters

log = logging.getLogger(__name__)


@dataclass
class ModelSource:
    base_dir: Path  # the base model directory
    adapters: list[Path]  # LoRA adapters to apply in order
    base_name: str  # what the user named (for cards and messages)


def adapter_base(adapter_dir: Path) -> str | None:
    cfg = adapter_dir / "adapter_config.json"
    if not cfg.exists():
        return None
    return json.loads(cfg.read_text(encoding="utf-8")).get("base_model_name_or_path")


def resolve_dir(name: str, cfg: Config) -> Path:
    if name.startswith(hub.BUILTIN_PREFIX):
        if name != "builtin:tiny":
            raise TuneboardError(f"unknown builtin model '{name}'; the builtin model is 'builtin:tiny'")
        return tiny.ensure()
    if gguf.is_gguf(name):
        return gguf.ensure_hf_dir(Path(name))
    return hub.resolve_model(name, cfg.model_revision, cfg.cache_dir)


def check_source(cfg: Config) -> None:
    """What can be checked of model_name_or_path and adapter_name_or_path without torch or the network: the
    builtin name, local paths (a hub id is checked when it is downloaded)."""
    name = cfg.model_name_or_path
    if name.startswith(hub.BUILTIN_PREFIX):
        if name != "builtin:tiny":
            raise TuneboardError(f"unknown builtin model '{name}'; the builtin model is 'builtin:tiny'")
    elif gguf.is_gguf(name):
        pass  # converted when the model is loaded
    elif Path(name).expanduser().exists() or name.startswith(("/", "./", "../", "~")):
        hub.resolve_model(name, cfg.model_revision, cfg.cache_dir)  # a local path: no download
    for a in cfg.adapters:
        if not (Path(a).expanduser() / "adapter_config.json").exists():
            raise TuneboardError(f"{a}: not a LoRA adapter directory (no adapter_config.json)")


def resolve_source(cfg: Config) -> ModelSource:
    """`model_name_or_path` may itself be a LoRA output directory: its base comes from adapter_config.json."""
    base = resolve_dir(cfg.model_name_or_path, cfg)
    adapters: list[Path] = []
    name = cfg.model_name_or_path
    if (base / "adapter_config.json").exists() and not (base / "config.json").exists():
        base_name = adapter_base(base)
        if not base_name:
            raise TuneboardError(f"{base}: adapter_config.json names no base model")
        adapters.append(base)
        name = base_name
        base = resolve_dir(base_name, cfg)
    for a in cfg.adapters:
        path = Path(a).expanduser()
        if not (path / "adapter_config.json").exists():
            raise TuneboardError(f"{a}: not a LoRA adapter directory (no adapter_config.json)")
        adapters.append(path)
    return ModelSource(base, adapters, name)


def load_tokenizer(model_dir: Path, cfg: Config) -> Any:
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=cfg.trust_remote_code, use_fast=True)
    except ValueError as exc:
        if "trust_remote_code" in str(exc):
            raise TuneboardError(
                f"{model_dir}: this model needs custom code; set trust_remote_code: true"
            ) from None
        raise
    if not getattr(tok, "is_fast", False):
        raise TuneboardError(f"{model_dir}: tuneboard needs a fast (Rust) tokenizer; none could be loaded")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def torch_dtype(name: str, device: str) -> Any:
    import torch

    if name == "auto":
        if device == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float16 if device == "cuda" else torch.float32
    return getattr(torch, name)


def saved_dtype(model_dir: Path) -> str | None:
    """The dtype a checkpoint's config.json says its weights are in ('bfloat16', ...), or None."""
    try:
        conf = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    value = conf.get("dtype") or conf.get("torch_dtype")
    return value if isinstance(value, str) else None


def quantization_config(cfg: Config) -> Any:
    if not cfg.quantization_bit:
        return None
    import torch

    if not torch.cuda.is_available():
        raise TuneboardError(
            f"quantization_bit: {cfg.quantization_bit} (QLoRA) needs a CUDA GPU and bitsandbytes; "
            "this machine has no CUDA GPU. Remove quantization_bit to train in full precision"
        )
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise TuneboardError("quantization_bit needs bitsandbytes: pip install bitsandbytes") from None
    from transformers import BitsAndBytesConfig

    if cfg.quantization_bit == 8:
        return BitsAndBytesConfig(load_in_8bit=True)
    compute = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=cfg.quantization_type,
        bnb_4bit_use_double_quant=cfg.double_quantization,
        bnb_4bit_compute_dtype=compute,
    )


def attn_implementation(cfg: Config) -> str:
    if cfg.flash_attn == "fa2":
        try:
            import flash_attn  # noqa: F401
        except ImportError:
            raise TuneboardError("flash_attn: fa2 needs the flash-attn package (CUDA only)") from None
        return "flash_attention_2"
    return "eager" if cfg.flash_attn == "eager" else "sdpa"


def load_model(
    model_dir: Path, cfg: Config, dtype: Any, device_map: Any = None, adapters: list[Path] | None = None
) -> Any:
    """The causal LM in `dtype`, which every caller chooses (never the dtype the checkpoint happens to be in);
    RoPE scaled when rope_scaling asks (here, or in the run that made `adapters`: rope.py)."""
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # per-tensor load/save bars; hub download bars are unaffected

    kwargs: dict[str, Any] = dict(
        trust_remote_code=cfg.trust_remote_code,
        attn_implementation=attn_implementation(cfg),
    )
    qcfg = quantization_config(cfg)
    if qcfg is not None:
        kwargs["quantization_config"] = qcfg
        kwargs["device_map"] = device_map or "auto"
    elif device_map is not None:
        kwargs["device_map"] = device_map
    kwargs["dtype"] = dtype
    scaling = rope.requested(cfg, adapters or [])
    if scaling:
        config = AutoConfig.from_pretrained(model_dir, trust_remote_code=cfg.trust_remote_code)
        if rope.apply(config, *scaling):
            kwargs["config"] = config
    try:
        return AutoModelForCausalLM.from_pretrained(model_dir, **kwargs)
    except ValueError as exc:
        if "trust_remote_code" in str(exc):
            raise TuneboardError(
                f"{model_dir}: this model needs custom code; set trust_remote_code: true"
            ) from None
        raise


class LightTokenizer:
    """The `tokenizers` library behind the small part of the HF tokenizer API that data/ uses (fast import)."""

    def __init__(self, model_dir: Path) -> None:
        from tokenizers import Tokenizer

        path = model_dir / "tokenizer.json"
        if not path.exists():
            raise TuneboardError(f"{model_dir}: no tokenizer.json (a fast tokenizer is needed)")
        self._tok = Tokenizer.from_file(str(path))
        self.backend_tokenizer = self._tok
        conf_path = model_dir / "tokenizer_config.json"
        conf = json.loads(conf_path.read_text(encoding="utf-8")) if conf_path.exists() else {}
        jinja = model_dir / "chat_template.jinja"
        self.chat_template = (
            jinja.read_text(encoding="utf-8") if jinja.exists() else conf.get("chat_template")
        )
        eos, bos = conf.get("eos_token"), conf.get("bos_token")
        self.eos_token = eos.get("content") if isinstance(eos, dict) else eos
        self.bos_token = bos.get("content") if isinstance(bos, dict) else bos
        self.eos_token_id = self._tok.token_to_id(self.eos_token) if self.eos_token else None
        self.bos_token_id = self._tok.token_to_id(self.bos_token) if self.bos_token else None
        self.add_bos_token = bool(conf.get("add_bos_token", False))

    def __call__(
        self, texts: list[str], add_special_tokens: bool = False, return_offsets_mapping: bool = False, **_
    ):
        encs = self._tok.encode_batch(texts, add_special_tokens=add_special_tokens)
        out: dict[str, Any] = {"input_ids": [e.ids for e in encs]}
        if return_offsets_mapping:
            out["offset_mapping"] = [e.offsets for e in encs]
        return out

    def decode(self, ids: list[int]) -> str:
        return self._tok.decode(ids, skip_special_tokens=False)


def light_tokenizer(model_dir: Path) -> LightTokenizer:
    return LightTokenizer(model_dir)


@dataclass
class Inference:
    model: Any
    tokenizer: Any
    template: Any
    source: ModelSource
    device: str


def load_for_inference(cfg: Config) -> Inference:
    """Model ready to generate: adapters merged in order, eval mode, on the GPU when there is one."""
    import torch

    source = resolve_source(cfg)
    tokenizer = load_tokenizer(source.base_dir, cfg)
    template = load_template(cfg.template, tokenizer, source.base_dir, source.adapters)
    device = "cuda" if torch.cuda.is_available() and not cfg.use_cpu else "cpu"
    model = load_model(source.base_dir, cfg, torch_dtype(cfg.infer_dtype, device), adapters=source.adapters)
    model = merge_adapters(model, source.adapters)
    if not cfg.quantization_bit:
        model = model.to(device)
    model.eval()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return Inference(model, tokenizer, template, source, device)


def stop_token_ids(tokenizer: Any, template: Any) -> list[int]:
    """eos plus the template's end-of-turn and stop words that are single tokens."""
    ids = []
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    for word in getattr(template, "stop_words", ()) or ():
        tid = tokenizer.convert_tokens_to_ids(word)
        if isinstance(tid, int) and tid != tokenizer.unk_token_id and tid not in ids:
            ids.append(tid)
    return ids

"""A local `.gguf` file (what Ollama and llama.cpp users have) as a model to fine-tune or chat with.

Model layer, called by load.resolve_dir: the file is dequantized once through transformers' GGUF reader into a
cached Hugging Face directory (fp32 safetensors, tokenizer, chat template), which is then used like any other.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from pathlib import Path

from ..errors import TuneboardError


def is_gguf(name: str) -> bool:
    return name.lower().endswith(".gguf") and Path(name).expanduser().is_file()


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "tuneboard" / "gguf"


def file_type(path: Path) -> str:
    """The GGUF's weight type as llama.cpp names it (Q4_1, Q8_0, F16, ...), or 'unknown'."""
    import gguf

    try:
        field = gguf.GGUFReader(path).fields.get("general.file_type")
        value = int(field.parts[field.data[0]][0]) if field is not None else None
        return gguf.LlamaFileType(value).name.removeprefix("MOSTLY_") if value is not None else "unknown"
    except (ValueError, KeyError, IndexError, OSError):
        return "unknown"


def _key(path: Path) -> str:
    st = path.stat()
    return hashlib.sha256(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:12]


def ensure_hf_dir(path: Path) -> Path:
    """The cached HF directory of a .gguf file, converted on first use (written under a temporary name, then
    renamed, so an interrupted conversion is never used)."""
    path = path.expanduser()
    target = cache_root() / f"{path.stem}-{_key(path)}"
    cached = (target / "config.json").exists()
    print(  # every time: a run from a quantized file should say so in its own log
        f"note: {path.name} holds {file_type(path)} weights, dequantized to fp32 "
        f"({'cached' if cached else 'once, cached'} in {target}). What the quantization lost stays lost: "
        "fine-tune the original checkpoint when you have it",
        file=sys.stderr,
    )
    if cached:
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp = target.with_name(f".{target.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    except (ValueError, KeyError, RuntimeError) as exc:  # an architecture or weight type the reader lacks
        raise TuneboardError(f"{path}: transformers cannot read this GGUF ({exc})") from None
    # the tensors are dequantized already: what marks the model as GGUF-quantized would only block saving it
    model.hf_quantizer = None
    if getattr(model.config, "quantization_config", None) is not None:
        del model.config.quantization_config
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, target)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (target / "config.json").exists():  # not another process that finished first
            raise
    return target

"""What differs between the model families that GGUF export writes: llama.cpp's architecture for each
transformers model type, how its tensors are stored, the metadata its loader reads, and what it cannot run.

Inference layer: gguf.py asks `family_of` for the family, then writes the file with `write_hyperparameters`.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

from ..errors import TuneboardError


@dataclass(frozen=True)
class Family:
    arch: str  # llama.cpp's architecture name (a value of gguf.MODEL_ARCH_NAMES)
    pairwise_rope: bool = False  # llama.cpp ropes neighbouring pairs; transformers' q/k rows are rotate-half
    norm_offset: float = 0.0  # added to each stored norm weight (Gemma computes x * (1 + w); llama.cpp x * w)
    pre: str = "default"  # llama.cpp pre-tokenizer assumed when the tokenizer's split is not recognised


# transformers model_type -> family (Mistral without a sliding window is a Llama to llama.cpp; GLM-4-9B-chat-hf
# is model type glm, llama.cpp's chatglm; GLM-4-0414 is glm4)
FAMILIES = {
    "llama": Family("llama", pairwise_rope=True, pre="llama-bpe"),
    "mistral": Family("llama", pairwise_rope=True, pre="llama-bpe"),
    "qwen2": Family("qwen2", pre="qwen2"),
    "qwen3": Family("qwen3", pre="qwen2"),
    "gemma2": Family("gemma2", norm_offset=1.0),
    "gemma3_text": Family("gemma3", norm_offset=1.0),
    "glm4": Family("glm4", pre="chatglm-bpe"),
    "glm": Family("chatglm", pre="chatglm-bpe"),
}
# for messages: the families by their usual names
FAMILY_NAMES = "Llama, Mistral, Qwen2/2.5, Qwen3, Gemma 2, Gemma 3 (text), GLM-4 (glm4 and glm)"
# llama.cpp fixes Gemma's layer pattern: every n-th layer attends globally, the others through the window
_GLOBAL_EVERY = {"gemma2": 2, "gemma3": 6}
# llama.cpp's Gemma "27B" (told by the layer count) scales queries by hidden/heads, every other size by head_dim
_GEMMA_27B_LAYERS = {"gemma2": 46, "gemma3": 62}


def family_of(config: Any) -> Family:
    """The family of a transformers config, or a TuneboardError naming the supported ones and the formats."""
    from ..config import CHOICES

    model_type = getattr(config, "model_type", None)
    if model_type not in FAMILIES:
        hint = ""
        if model_type == "gemma3":
            hint = " (a Gemma 3 with its vision tower: train and export the text model, Gemma3ForCausalLM)"
        raise TuneboardError(
            f"GGUF export supports {FAMILY_NAMES} (model types {', '.join(FAMILIES)}); this model is "
            f"'{model_type}'{hint}. Valid export_format values: {', '.join(CHOICES['export_format'])}; export "
            "with export_format: hf and convert the directory with llama.cpp's convert_hf_to_gguf.py"
        )
    family = FAMILIES[model_type]
    if model_type == "mistral" and getattr(config, "sliding_window", None):
        warnings.warn(  # as llama.cpp's own converter does: the window is dropped
            f"GGUF export: llama.cpp runs this Mistral model without its {config.sliding_window}-token sliding "
            "window; replies to longer prompts may differ from transformers'",
            stacklevel=3,
        )
    if family.arch in _GLOBAL_EVERY:
        _check_gemma(config, family.arch)
    return family


def head_dim(config: Any) -> int:
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def _check_gemma(config: Any, arch: str) -> None:
    """Refuse a Gemma whose attention llama.cpp would compute differently (it reads none of these keys)."""
    n, every = config.num_hidden_layers, _GLOBAL_EVERY[arch]
    expected = ["full_attention" if (i + 1) % every == 0 else "sliding_attention" for i in range(n)]
    layers = list(getattr(config, "layer_types", None) or expected)
    if getattr(config, "sliding_window", None) and layers != expected:
        raise TuneboardError(
            f"GGUF export: llama.cpp's {arch} attends globally in every {every}th layer and through the sliding "
            f"window in the others; this model's layer_types are {layers}"
        )
    scale = getattr(config, "query_pre_attn_scalar", None) or head_dim(config)
    llama_cpp = (
        config.hidden_size // config.num_attention_heads if n == _GEMMA_27B_LAYERS[arch] else head_dim(config)
    )
    if scale != llama_cpp:
        raise TuneboardError(
            f"GGUF export: this model scales queries by 1/sqrt({scale}) (query_pre_attn_scalar) but llama.cpp's "
            f"{arch} with {n} layers scales by 1/sqrt({llama_cpp})"
        )
    local = _rope_parameters(config, "sliding_attention")[0]
    if arch == "gemma3" and local != 10000.0:
        raise TuneboardError(
            f"GGUF export: llama.cpp's gemma3 ropes sliding-window layers with base 10000; this model uses {local}"
        )
    if arch == "gemma2" and getattr(config, "attn_logit_softcapping", None) is None:
        raise TuneboardError("GGUF export: llama.cpp's gemma2 always softcaps attention; this model does not")


def _rope_parameters(config: Any, layer_type: str = "full_attention") -> tuple[float, dict[str, Any]]:
    """(rope theta, scaling parameters) from transformers 5 `rope_parameters` (a dict per layer type for
    Gemma 3) or the older `rope_scaling` / `rope_theta`."""
    params = dict(getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {})
    if isinstance(params.get(layer_type), dict):
        params = dict(params[layer_type])
    theta = params.get("rope_theta", getattr(config, "rope_theta", None) or 10000.0)
    if layer_type == "sliding_attention" and getattr(config, "rope_local_base_freq", None):
        theta = config.rope_local_base_freq
    return float(theta), params


def rope_freqs(config: Any) -> Any:
    """Llama 3.1-style rope scaling: llama.cpp reads per-dimension frequency factors from `rope_freqs`."""
    import numpy as np

    theta, p = _rope_parameters(config)
    if p.get("rope_type", p.get("type")) != "llama3":
        return None
    dim = head_dim(config)
    factor, low, high = p.get("factor", 8.0), p.get("low_freq_factor", 1.0), p.get("high_freq_factor", 4.0)
    old_ctx = p.get("original_max_position_embeddings", 8192)
    factors = []
    for i in range(0, dim, 2):
        wavelen = 2 * math.pi * theta ** (i / dim)
        if wavelen < old_ctx / high:
            factors.append(1.0)
        elif wavelen > old_ctx / low:
            factors.append(factor)
        else:
            smooth = (old_ctx / wavelen - low) / (high - low)
            factors.append(1.0 / ((1 - smooth) / factor + smooth))
    return np.array(factors, dtype=np.float32)


def write_hyperparameters(writer: Any, config: Any, family: Family, dtype: str, n_vocab: int) -> None:
    """The `<arch>.*` keys llama.cpp's loader reads for this family, and the file type."""
    import gguf

    n_head = config.num_attention_heads
    dim = head_dim(config)
    writer.add_vocab_size(n_vocab)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(getattr(config, "num_key_value_heads", None) or n_head)
    if dim != config.hidden_size // n_head or family.arch in _GLOBAL_EVERY:
        writer.add_key_length(dim)
        writer.add_value_length(dim)
    theta, scaling = _rope_parameters(config)
    # GLM rotates only part of each head (transformers 5 keeps the fraction among the rope parameters)
    partial = scaling.get("partial_rotary_factor", getattr(config, "partial_rotary_factor", None) or 1.0)
    writer.add_rope_dimension_count(int(dim * partial))
    writer.add_rope_freq_base(theta)
    kind = scaling.get("rope_type", scaling.get("type")) or "default"
    if kind == "linear":
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(scaling["factor"])
    elif kind == "yarn":
        writer.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        writer.add_rope_scaling_factor(scaling["factor"])
        writer.add_rope_scaling_orig_ctx_len(scaling["original_max_position_embeddings"])
    elif kind not in ("default", "llama3"):
        raise TuneboardError(
            f"GGUF export: rope scaling '{kind}' is not supported (default, linear, yarn, llama3)"
        )
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    if family.arch in _GLOBAL_EVERY:
        if getattr(config, "sliding_window", None):
            writer.add_sliding_window(config.sliding_window)
        if getattr(config, "attn_logit_softcapping", None):
            writer.add_attn_logit_softcapping(config.attn_logit_softcapping)
        if getattr(config, "final_logit_softcapping", None):
            writer.add_final_logit_softcapping(config.final_logit_softcapping)
    writer.add_file_type(
        gguf.LlamaFileType.ALL_F32
        if dtype == "f32"
        else getattr(gguf.LlamaFileType, f"MOSTLY_{dtype.upper()}")
    )
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)

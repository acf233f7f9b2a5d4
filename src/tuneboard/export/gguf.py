"""GGUF export for llama.cpp and Ollama: a merged model of a family in gguf_families.py and its byte-level BPE
tokenizer (gguf_vocab.py) -> one file.

Inference layer: export/workflow.py calls `write_gguf` inside its temporary export directory (renamed when
complete).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import TuneboardError
from .gguf_families import Family, family_of, rope_freqs, write_hyperparameters
from .gguf_vocab import write_vocabulary

# weight types: unquantized, and the quantizations the gguf package can write (its k-quants only read)
DTYPES = ("f32", "f16", "q8_0", "q5_1", "q5_0", "q4_1", "q4_0")


def write_gguf(model: Any, tokenizer: Any, template: Any, path: Path, dtype: str = "f16") -> Path:
    """Write `model` (a transformers causal LM of a family in gguf_families.FAMILIES) with `tokenizer` to
    `path` as a GGUF file.

    2-D weights are stored in `dtype` (one of DTYPES; a quantized type falls back to f16 for a matrix whose rows
    do not fill whole blocks, as llama.cpp does), norms and other 1-D tensors in f32. The tokenizer's chat
    template and the template's end-of-turn token go into the metadata, so llama.cpp and Ollama stop where
    training did.
    """
    import gguf
    import numpy as np

    config = model.config
    family = family_of(config)
    if dtype not in DTYPES:
        raise TuneboardError(
            f"GGUF export: dtype (the weight type) must be one of {', '.join(DTYPES)}, not '{dtype}'"
        )
    n_vocab = model.get_input_embeddings().weight.shape[0]
    state = model.state_dict()
    plan = list(_tensor_plan(state, config, family, dtype))
    extra = rope_freqs(config)

    writer = gguf.GGUFWriter(path, family.arch)
    try:
        writer.add_type("model")
        writer.add_name(path.stem)
        write_hyperparameters(writer, config, family, dtype, n_vocab)
        write_vocabulary(writer, tokenizer, template, config, family, n_vocab)
        if extra is not None:
            writer.add_tensor_info("rope_freqs.weight", extra.shape, extra.dtype, extra.nbytes)
        for name, key, _, kind in plan:
            shape = tuple(state[key].shape)
            if kind in ("f16", "f32"):
                item = np.dtype(np.float16 if kind == "f16" else np.float32)
                writer.add_tensor_info(name, shape, item, math.prod(shape) * item.itemsize)
            else:
                qtype = _QTYPE[kind]
                raw = gguf.quant_shape_to_byte_shape(shape, qtype)
                writer.add_tensor_info(name, raw, np.dtype(np.uint8), math.prod(raw), raw_dtype=qtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        if extra is not None:
            writer.write_tensor_data(extra)
        for name, key, heads, kind in plan:  # one tensor at a time: memory stays at one tensor's copy
            offset = family.norm_offset if name.endswith("norm.weight") else 0.0
            data = _to_numpy(state[key], heads, kind == "f16", offset)
            writer.write_tensor_data(
                data if kind in ("f16", "f32") else gguf.quants.quantize(data, _QTYPE[kind])
            )
    finally:
        writer.close()
    return path


class _QuantTypes(dict):
    """llama.cpp's quantization type of each name in DTYPES (looked up lazily: gguf is imported on use)."""

    def __missing__(self, kind: str) -> Any:
        import gguf

        self[kind] = getattr(gguf.GGMLQuantizationType, kind.upper())
        return self[kind]


_QTYPE = _QuantTypes()


def _block(kind: str) -> int:
    import gguf

    return gguf.GGML_QUANT_SIZES[_QTYPE[kind]][0]


def _arch_enum(arch: str) -> Any:
    import gguf

    return next(enum for enum, name in gguf.MODEL_ARCH_NAMES.items() if name == arch)


def _tensor_plan(
    state: dict[str, Any], config: Any, family: Family, dtype: str
) -> Iterator[tuple[str, str, int, str]]:
    """(GGUF name, state-dict key, heads to un-rotate (0: none), weight type) for each tensor to write."""
    import gguf

    names = gguf.get_tensor_name_map(_arch_enum(family.arch), config.num_hidden_layers)
    n_head = config.num_attention_heads
    n_kv = getattr(config, "num_key_value_heads", None) or n_head
    tied = bool(getattr(config, "tie_word_embeddings", False))
    if "lm_head.weight" in state and "model.embed_tokens.weight" in state:
        tied = tied or state["lm_head.weight"].data_ptr() == state["model.embed_tokens.weight"].data_ptr()
    for key, t in state.items():
        if key.endswith("rotary_emb.inv_freq") or (tied and key == "lm_head.weight"):
            continue  # recomputed by llama.cpp / the output layer reuses token_embd
        name = names.get_name(key, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise TuneboardError(
                f"GGUF export: tensor '{key}' has no llama.cpp name for the {family.arch} architecture"
            )
        heads = 0
        if family.pairwise_rope and ".attn_q." in name:
            heads = n_head
        elif family.pairwise_rope and ".attn_k." in name:
            heads = n_kv
        kind = "f32"
        if t.dim() == 2:
            kind = dtype
            if dtype not in ("f16", "f32") and t.shape[-1] % _block(dtype):
                kind = "f16"  # a row that is not whole blocks cannot be quantized
        yield name, key, heads, kind


def _to_numpy(t: Any, heads: int, to_half: bool, offset: float = 0.0) -> Any:
    import numpy as np
    import torch

    data = t.detach().to("cpu", torch.float32) + offset
    if heads:
        data = _interleave_rotary(data, heads)
    return data.numpy().astype(np.float16 if to_half else np.float32)


def _interleave_rotary(w: Any, heads: int) -> Any:
    """Reorder q/k rows (or bias) per head from transformers' rotate-half layout (the two rotary halves
    stored one after the other) to the pairwise layout of llama.cpp's normal rope for the llama
    architecture. Qwen2/3 and Gemma use the NeoX rope in llama.cpp, which matches transformers, and GLM's
    transformers code already ropes neighbouring pairs, as llama.cpp's chatglm and glm4 do: no reordering."""
    half = w.shape[0] // heads // 2
    return w.reshape(heads, 2, half, *w.shape[1:]).transpose(1, 2).reshape(w.shape)

"""GGUF export for llama.cpp and Ollama: a merged Llama, Mistral, Qwen2 or Qwen3 model and its byte-level BPE
tokenizer -> one file.

Inference layer: export.py calls `write_gguf` inside its temporary export directory (renamed when complete).
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import TuneboardError

# transformers model_type -> llama.cpp architecture (Mistral without a sliding window is a Llama to llama.cpp)
ARCHITECTURES = {"llama": "llama", "mistral": "llama", "qwen2": "qwen2", "qwen3": "qwen3"}
# llama.cpp runs rope on neighbouring pairs for these (transformers' q/k rows are reordered); NeoX halves otherwise
_PAIRWISE_ROPE = ("llama",)
# weight types: unquantized, and the quantizations the gguf package can write (its k-quants only read)
DTYPES = ("f32", "f16", "q8_0", "q5_1", "q5_0", "q4_1", "q4_0")

# the pre-tokenizer regexes that transformers tokenizers use, and the llama.cpp name of the same split
_QWEN2_REGEX = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
_LLAMA3_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
    r"|\s+(?!\S)|\s+"
)
_PRE_BY_REGEX = {_QWEN2_REGEX: "qwen2", _LLAMA3_REGEX: "llama-bpe"}
_DEFAULT_PRE = {"qwen2": "qwen2", "qwen3": "qwen2", "llama": "llama-bpe"}


def write_gguf(model: Any, tokenizer: Any, template: Any, path: Path, dtype: str = "f16") -> Path:
    """Write `model` (a transformers causal LM of ARCHITECTURES) with `tokenizer` to `path` as a GGUF file.

    2-D weights are stored in `dtype` (one of DTYPES; a quantized type falls back to f16 for a matrix whose rows
    do not fill whole blocks, as llama.cpp does), norms and other 1-D tensors in f32. The tokenizer's chat
    template and the template's end-of-turn token go into the metadata, so llama.cpp and Ollama stop where
    training did.
    """
    import gguf
    import numpy as np

    config = model.config
    model_type = getattr(config, "model_type", None)
    if model_type not in ARCHITECTURES:
        raise TuneboardError(
            f"GGUF export supports the {', '.join(ARCHITECTURES)} model types; this model is '{model_type}'. "
            "Export a Hugging Face directory instead (export_format: hf; the GGUF values are gguf, gguf-f16, "
            "gguf-f32 and gguf-q8_0 / q5_1 / q5_0 / q4_1 / q4_0) and convert it with llama.cpp's "
            "convert_hf_to_gguf.py"
        )
    if model_type == "mistral" and getattr(config, "sliding_window", None):
        warnings.warn(  # as llama.cpp's own converter does: the window is dropped
            f"GGUF export: llama.cpp runs this Mistral model without its {config.sliding_window}-token sliding "
            "window; replies to longer prompts may differ from transformers'",
            stacklevel=2,
        )
    arch = ARCHITECTURES[model_type]
    if dtype not in DTYPES:
        raise TuneboardError(
            f"GGUF export: dtype (the weight type) must be one of {', '.join(DTYPES)}, not '{dtype}'"
        )
    n_vocab = model.get_input_embeddings().weight.shape[0]
    tokens, types, merges, pre = _vocabulary(tokenizer, n_vocab, arch)
    state = model.state_dict()
    plan = list(_tensor_plan(state, config, arch, dtype))
    extra = _rope_freqs(config)

    writer = gguf.GGUFWriter(path, gguf.MODEL_ARCH_NAMES[_arch_enum(arch)])
    try:
        writer.add_type("model")
        writer.add_name(path.stem)
        _hyperparameters(writer, config, dtype, n_vocab)
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre(pre)
        writer.add_token_list(tokens)
        writer.add_token_types(types)
        writer.add_token_merges(merges)
        _special_tokens(writer, tokenizer, template, config)
        chat = getattr(tokenizer, "chat_template", None)
        if chat:
            if isinstance(chat, dict):
                chat = [{"name": k, "template": v} for k, v in chat.items()]
            writer.add_chat_template(chat)
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
        for _, key, heads, kind in plan:  # one tensor at a time: memory stays at one tensor's copy
            data = _to_numpy(state[key], heads, kind == "f16")
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

    return {"llama": gguf.MODEL_ARCH.LLAMA, "qwen2": gguf.MODEL_ARCH.QWEN2, "qwen3": gguf.MODEL_ARCH.QWEN3}[
        arch
    ]


def _tensor_plan(
    state: dict[str, Any], config: Any, arch: str, dtype: str
) -> Iterator[tuple[str, str, int, str]]:
    """(GGUF name, state-dict key, heads to un-rotate (0: none), weight type) for each tensor to write."""
    import gguf

    names = gguf.get_tensor_name_map(_arch_enum(arch), config.num_hidden_layers)
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
                f"GGUF export: tensor '{key}' has no llama.cpp name for the {arch} architecture"
            )
        heads = 0
        if arch in _PAIRWISE_ROPE and ".attn_q." in name:
            heads = n_head
        elif arch in _PAIRWISE_ROPE and ".attn_k." in name:
            heads = n_kv
        kind = "f32"
        if t.dim() == 2:
            kind = dtype
            if dtype not in ("f16", "f32") and t.shape[-1] % _block(dtype):
                kind = "f16"  # a row that is not whole blocks cannot be quantized
        yield name, key, heads, kind


def _to_numpy(t: Any, heads: int, to_half: bool) -> Any:
    import numpy as np
    import torch

    data = t.detach().to("cpu", torch.float32)
    if heads:
        data = _interleave_rotary(data, heads)
    return data.numpy().astype(np.float16 if to_half else np.float32)


def _interleave_rotary(w: Any, heads: int) -> Any:
    """Reorder q/k rows (or bias) per head from transformers' rotate-half layout (the two rotary halves
    stored one after the other) to the pairwise layout of llama.cpp's normal rope for the llama
    architecture. Qwen2/3 use the NeoX rope in llama.cpp, which matches transformers: no reordering."""
    half = w.shape[0] // heads // 2
    return w.reshape(heads, 2, half, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


def _rope(config: Any) -> tuple[float, dict[str, Any]]:
    """(rope theta, scaling parameters) from transformers 5 `rope_parameters` or the older `rope_scaling`."""
    params = dict(getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {})
    theta = params.get("rope_theta", getattr(config, "rope_theta", 10000.0))
    return float(theta), params


def _rope_freqs(config: Any) -> Any:
    """Llama 3.1-style rope scaling: llama.cpp reads per-dimension frequency factors from `rope_freqs`."""
    import numpy as np

    theta, p = _rope(config)
    if p.get("rope_type", p.get("type")) != "llama3":
        return None
    dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
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


def _hyperparameters(writer: Any, config: Any, dtype: str, n_vocab: int) -> None:
    import gguf

    n_head = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // n_head
    writer.add_vocab_size(n_vocab)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(getattr(config, "num_key_value_heads", None) or n_head)
    if head_dim != config.hidden_size // n_head:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    writer.add_rope_dimension_count(head_dim)
    theta, scaling = _rope(config)
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
    writer.add_file_type(
        gguf.LlamaFileType.ALL_F32
        if dtype == "f32"
        else getattr(gguf.LlamaFileType, f"MOSTLY_{dtype.upper()}")
    )
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


def _vocabulary(tokenizer: Any, n_vocab: int, arch: str) -> tuple[list[str], list[int], list[str], str]:
    """Tokens (padded to the embedding rows), token types, merges and llama.cpp's pre-tokenizer name."""
    import gguf

    backend = getattr(tokenizer, "backend_tokenizer", None)
    spec = json.loads(backend.to_str()) if backend is not None else {}
    model = spec.get("model") or {}
    if model.get("type") != "BPE" or (spec.get("decoder") or {}).get("type") != "ByteLevel":
        kind = model.get("type") or type(tokenizer).__name__
        raise TuneboardError(
            f"GGUF export supports byte-level BPE tokenizers (GPT-2, Qwen2, Llama 3 style); this one is {kind} "
            "(e.g. SentencePiece). Export a safetensors directory and convert it with llama.cpp's "
            "convert_hf_to_gguf.py"
        )
    vocab = tokenizer.get_vocab()
    if max(vocab.values()) >= n_vocab:
        raise TuneboardError(
            f"GGUF export: the tokenizer has ids up to {max(vocab.values())} but the model embeds {n_vocab} tokens"
        )
    tokens = [f"[PAD{i}]" for i in range(n_vocab)]
    types = [int(gguf.TokenType.UNUSED)] * n_vocab
    for text, i in vocab.items():
        tokens[i], types[i] = text, int(gguf.TokenType.NORMAL)
    for i, added in tokenizer.added_tokens_decoder.items():
        tokens[i] = added.content
        types[i] = int(gguf.TokenType.CONTROL if added.special else gguf.TokenType.USER_DEFINED)
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    return tokens, types, merges, _pre_tokenizer(spec.get("pre_tokenizer") or {}, arch)


def _pre_tokenizer(pre: dict[str, Any], arch: str) -> str:
    """llama.cpp's name for the way this tokenizer splits text before BPE.

    A plain ByteLevel pre-tokenizer (with its regex, no prefix space) splits with the GPT-2 regex, which
    llama.cpp calls 'gpt-2'; the Qwen2 and Llama 3 tokenizers split with their own regex, then ByteLevel.
    """
    if pre.get("type") == "ByteLevel" and pre.get("use_regex", True) and not pre.get("add_prefix_space"):
        return "gpt-2"
    parts = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else []
    if (
        len(parts) == 2
        and parts[0].get("type") == "Split"
        and parts[1].get("type") == "ByteLevel"
        and not parts[1].get("use_regex", True)
    ):
        name = _PRE_BY_REGEX.get((parts[0].get("pattern") or {}).get("Regex"))
        if name:
            return name
    fallback = _DEFAULT_PRE[arch]
    warnings.warn(
        f"GGUF export: unrecognised pre-tokenizer {json.dumps(pre)[:200]}; llama.cpp will split text as "
        f"'{fallback}', which may tokenize some text differently from transformers",
        stacklevel=3,
    )
    return fallback


def _special_tokens(writer: Any, tokenizer: Any, template: Any, config: Any) -> None:
    bos = tokenizer.bos_token_id
    if bos is None:
        bos = getattr(config, "bos_token_id", None)
    bos = bos if isinstance(bos, int) else None
    ids = tokenizer("x").input_ids
    if bos is not None:
        writer.add_bos_token_id(bos)
    writer.add_add_bos_token(bos is not None and ids[:1] == [bos])
    if tokenizer.eos_token_id is not None:
        writer.add_eos_token_id(tokenizer.eos_token_id)
    writer.add_add_eos_token(tokenizer.eos_token_id is not None and ids[-1:] == [tokenizer.eos_token_id])
    if tokenizer.pad_token_id is not None:
        writer.add_pad_token_id(tokenizer.pad_token_id)
    stops = [w for w in getattr(template, "stop_words", ()) if w]
    if stops:  # the end-of-turn marker of the chat template, when it is one token
        eot = tokenizer.convert_tokens_to_ids(stops[0])
        if (
            isinstance(eot, int)
            and eot != tokenizer.unk_token_id
            and tokenizer.convert_ids_to_tokens(eot) == stops[0]
        ):
            writer.add_eot_token_id(eot)

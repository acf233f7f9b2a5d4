"""The tokenizer part of a GGUF file: a byte-level BPE tokenizer's tokens, types and merges, llama.cpp's name
for its pre-tokenizer, and the special tokens.

Inference layer: gguf.py calls `write_vocabulary` while it fills the metadata.
"""

from __future__ import annotations

import json
import warnings
from typing import Any

from ..errors import TuneboardError
from .gguf_families import Family

# the pre-tokenizer regexes that transformers tokenizers use, and the llama.cpp name of the same split
_QWEN2_REGEX = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
_LLAMA3_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
    r"|\s+(?!\S)|\s+"
)
_PRE_BY_REGEX = {_QWEN2_REGEX: "qwen2", _LLAMA3_REGEX: "llama-bpe"}


def write_vocabulary(
    writer: Any, tokenizer: Any, template: Any, config: Any, family: Family, n_vocab: int
) -> None:
    """The tokenizer.* keys: vocabulary, merges, pre-tokenizer, special tokens and the chat template."""
    tokens, types, merges, pre = _vocabulary(tokenizer, n_vocab, family)
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


def _vocabulary(tokenizer: Any, n_vocab: int, family: Family) -> tuple[list[str], list[int], list[str], str]:
    """Tokens (padded to the embedding rows), token types, merges and llama.cpp's pre-tokenizer name."""
    import gguf

    backend = getattr(tokenizer, "backend_tokenizer", None)
    spec = json.loads(backend.to_str()) if backend is not None else {}
    model = spec.get("model") or {}
    if model.get("type") != "BPE" or (spec.get("decoder") or {}).get("type") != "ByteLevel":
        kind = model.get("type") or type(tokenizer).__name__
        raise TuneboardError(
            f"GGUF export writes byte-level BPE tokenizers (GPT-2, Qwen2, Llama 3, GLM-4 style); this one is "
            f"{kind} without byte-level decoding (SentencePiece style, as Gemma's and Mistral 7B's are). Export with "
            "export_format: hf and convert the directory with llama.cpp's convert_hf_to_gguf.py"
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
    return tokens, types, merges, _pre_tokenizer(spec.get("pre_tokenizer") or {}, family)


def _pre_tokenizer(pre: dict[str, Any], family: Family) -> str:
    """llama.cpp's name for the way this tokenizer splits text before BPE.

    A plain ByteLevel pre-tokenizer (with its regex, no prefix space) splits with the GPT-2 regex, which
    llama.cpp calls 'gpt-2'; the Qwen2 and Llama 3 tokenizers split with their own regex, then ByteLevel.
    GLM-4's tokenizer splits as Llama 3's does; llama.cpp names that 'chatglm-bpe' for GLM (no BOS in front).
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
        if name == "llama-bpe" and family.pre == "chatglm-bpe":
            return family.pre
        if name:
            return name
    fallback = family.pre
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
    # the chat template's end-of-turn marker, when it is one token; llama.cpp stops at EOS anyway, so a marker
    # other than EOS is preferred (GLM-4: <|user|> after <|endoftext|>; Gemma: <end_of_turn> before <eos>)
    single = [
        t
        for t in (_one_token(tokenizer, w) for w in getattr(template, "stop_words", ()) if w)
        if t is not None
    ]
    others = [t for t in single if t != tokenizer.eos_token_id]
    if others or single:
        writer.add_eot_token_id((others or single)[0])


def _one_token(tokenizer: Any, text: str) -> int | None:
    tid = tokenizer.convert_tokens_to_ids(text)
    if (
        isinstance(tid, int)
        and tid != tokenizer.unk_token_id
        and tokenizer.convert_ids_to_tokens(tid) == text
    ):
        return tid
    return None

"""Pre-training text (stage pt) -> blocks of cutoff_len tokens, every token trained.

Data layer, next to tokenize.py (the conversations' masks) and pairs.py (preference pairs). A document is a
`Conversation` holding one prompt message and no reply: LLaMA-Factory's `"columns": {"prompt": "text"}`
entries, the lines of a .txt file, records with only a `text` field (sniff.sniff_formatting marks them).
As LLaMA-Factory does for pt, a document is tokenized without a chat template, starts with BOS where the
tokenizer adds one, ends with EOS, and the stream of documents is cut into blocks of cutoff_len tokens.
Unlike LLaMA-Factory the short last block is kept, so no token is dropped.
"""

from __future__ import annotations

import itertools
from typing import Any

from .formats import Conversation
from .tokenize import EncodeStats


def is_document(conv: Conversation) -> bool:
    return len(conv.messages) == 1 and conv.rejected is None


def document_ids(convs: list[Conversation], tokenizer: Any) -> list[list[int]]:
    """Each document's tokens, BOS (when the tokenizer adds one) and EOS included."""
    texts = [c.messages[0].content for c in convs]
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
    adds_bos = getattr(tokenizer, "add_bos_token", False) and tokenizer.bos_token_id is not None
    bos = [tokenizer.bos_token_id] if adds_bos else []
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    return [bos + list(x) + eos for x in ids]


def blocks(rows: list[list[int]], cutoff_len: int) -> list[list[int]]:
    """The documents end to end, cut every cutoff_len tokens; the last block may be shorter."""
    stream = list(itertools.chain.from_iterable(rows))
    return [stream[i : i + cutoff_len] for i in range(0, len(stream), cutoff_len)]


def encode_documents(
    convs: list[Conversation], tokenizer: Any, cutoff_len: int
) -> tuple[dict[str, list[list[int]]], EncodeStats]:
    """Rows `input_ids` and `labels` (the same tokens: a causal LM learns every next token)."""
    rows = blocks(document_ids(convs, tokenizer), cutoff_len)
    n = sum(map(len, rows))
    stats = EncodeStats(records=len(convs), kept=len(convs), tokens=n, trained_tokens=n)
    return {"input_ids": rows, "labels": [list(r) for r in rows]}, stats

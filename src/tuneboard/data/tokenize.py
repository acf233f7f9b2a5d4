"""`Conversation` -> `input_ids` + `labels`: the ONLY place where loss masking is decided.

Data layer, step 5 of the flow. Each conversation is rendered once by its template and tokenized whole
(batched, fast tokenizer, character offsets), so tokens are exactly what the model sees at inference;
a token is trained when its first character lies in a trained segment (reply text + end-of-turn).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any

from .formats import Conversation

IGNORE = -100


@dataclass
class EncodeStats:
    records: int = 0
    kept: int = 0
    truncated: int = 0
    dropped_no_target: int = 0
    tokens: int = 0
    trained_tokens: int = 0
    dropped_examples: list[str] = field(default_factory=list)

    def add(self, other: EncodeStats) -> None:
        for name in ("records", "kept", "truncated", "dropped_no_target", "tokens", "trained_tokens"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.dropped_examples += other.dropped_examples[: max(0, 5 - len(self.dropped_examples))]


def _spans(template: Any, conv: Conversation) -> tuple[str, list[int], list[tuple[bool, int]]]:
    segs = template.render(conv, for_training=True)
    starts, meta, pos, parts = [], [], 0, []
    for s in segs:
        starts.append(pos)
        meta.append((s.train, s.turn))
        parts.append(s.text)
        pos += len(s.text)
    return "".join(parts), starts, meta


def _truncate(
    ids: list[int], labels: list[int], turns: list[int], cutoff: int
) -> tuple[list[int], list[int]]:
    """Fit `cutoff` tokens: drop whole exchanges from the end while an earlier one is still trained; if the
    rest is too long, keep its reply's head (at least half the budget when the reply is long) and the tail
    of its prompt (the question's end and the assistant header sit next to the reply)."""
    keep = len(ids)
    while keep > cutoff:
        last_turn = turns[keep - 1]
        start = next(i for i in range(keep) if turns[i] == last_turn)
        if last_turn <= 0 or start == 0 or all(lab == IGNORE for lab in labels[:start]):
            break  # never cut the exchange that holds the only trained tokens (mask_history)
        keep = start
    ids, labels, turns = ids[:keep], labels[:keep], turns[:keep]
    if len(ids) <= cutoff:
        return ids, labels
    first_target = next((i for i, lab in enumerate(labels) if lab != IGNORE), len(ids))
    prompt_len, reply_len = first_target, len(ids) - first_target
    reply_keep = min(reply_len, max(cutoff - prompt_len, cutoff // 2))
    prompt_keep = cutoff - reply_keep
    p_ids = ids[:first_target][len(ids[:first_target]) - prompt_keep :] if prompt_keep else []
    p_lab = labels[:first_target][len(labels[:first_target]) - prompt_keep :] if prompt_keep else []
    return p_ids + ids[first_target : first_target + reply_keep], p_lab + labels[
        first_target : first_target + reply_keep
    ]


def encode(
    convs: list[Conversation],
    template: Any,
    tokenizer: Any,
    cutoff_len: int,
    train_on_prompt: bool = False,
    mask_history: bool = False,
) -> tuple[dict[str, list[list[int]]], EncodeStats]:
    """Batch-encode conversations; records left with no trained token are dropped and counted."""
    texts, starts, metas = [], [], []
    for conv in convs:
        text, st, meta = _spans(template, conv)
        texts.append(text)
        starts.append(st)
        metas.append(meta)
    enc = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True, return_attention_mask=False)
    out: dict[str, list[list[int]]] = {"input_ids": [], "labels": []}
    stats = EncodeStats(records=len(convs))
    for k, conv in enumerate(convs):
        ids = enc["input_ids"][k]
        offsets = enc["offset_mapping"][k]
        st, meta = starts[k], metas[k]
        last_turn = max((t for _, t in meta), default=0)
        labels, turns = [], []
        for tok, (a, _b) in zip(ids, offsets, strict=False):
            seg = max(bisect.bisect_right(st, a) - 1, 0)
            train, turn = meta[seg]
            trained = train or (train_on_prompt and turn >= 0)
            if mask_history and turn != last_turn:
                trained = False
            labels.append(tok if trained else IGNORE)
            turns.append(turn)
        if len(ids) > cutoff_len:
            ids, labels = _truncate(list(ids), labels, turns, cutoff_len)
            stats.truncated += 1
        n_trained = sum(1 for lab in labels if lab != IGNORE)
        if n_trained == 0:
            stats.dropped_no_target += 1
            if len(stats.dropped_examples) < 5:
                stats.dropped_examples.append(conv.source or f"record {k}")
            continue
        out["input_ids"].append(list(ids))
        out["labels"].append(labels)
        stats.kept += 1
        stats.tokens += len(ids)
        stats.trained_tokens += n_trained
    return out, stats


def encode_prompts(convs: list[Conversation], template: Any, tokenizer: Any) -> list[list[int]]:
    """Token ids of generation prompts (conversations ending with a user message), for eval and chat."""
    texts = [template.prompt_text(c) for c in convs]
    return tokenizer(texts, add_special_tokens=False, return_attention_mask=False)["input_ids"]

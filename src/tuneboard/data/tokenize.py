"""`Conversation` -> `input_ids` + `labels`: the ONLY place where loss masking is decided.

Data layer, step 5 of the flow. Each conversation is rendered once by its template and tokenized as the
whole text is (align.py finds the tokens and where each segment starts, fast), so tokens are exactly what the
model sees at inference; a token is trained when its first character lies in a trained segment (reply text +
end-of-turn). The rules are `build_labels` and `_truncate`, below.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .align import _tokenize
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
    first = next((i for i, lab in enumerate(labels) if lab != IGNORE), len(ids))
    reply_keep = min(len(ids) - first, max(cutoff - first, cutoff // 2))
    lo, hi = first - (cutoff - reply_keep), first + reply_keep  # prompt tail + reply head
    return ids[lo:first] + ids[first:hi], labels[lo:first] + labels[first:hi]


def render_and_tokenize(convs: list[Conversation], template: Any, tokenizer: Any) -> tuple[list, list]:
    """Stage 1: render each conversation and tokenize the texts in one batched Rust call (which releases the
    GIL, so loader.tokenize overlaps it with stage 2 of the previous chunk)."""
    texts, starts, metas = [], [], []
    for conv in convs:
        text, st, meta = _spans(template, conv)
        texts.append(text)
        starts.append(st)
        metas.append(meta)
    return metas, _tokenize(tokenizer, texts, starts)


def encode(
    convs: list[Conversation],
    template: Any,
    tokenizer: Any,
    cutoff_len: int,
    train_on_prompt: bool = False,
    mask_history: bool = False,
) -> tuple[dict[str, list[list[int]]], EncodeStats]:
    """Batch-encode conversations; records left with no trained token are dropped and counted."""
    stage1 = render_and_tokenize(convs, template, tokenizer)
    return build_labels(convs, stage1, cutoff_len, train_on_prompt, mask_history)


def build_labels(
    convs: list[Conversation],
    stage1: tuple[list, list],
    cutoff_len: int,
    train_on_prompt: bool = False,
    mask_history: bool = False,
) -> tuple[dict[str, list[list[int]]], EncodeStats]:
    """Stage 2: labels from the segment token ranges, truncation, and the counts."""
    metas, tokenized = stage1
    out: dict[str, list[list[int]]] = {"input_ids": [], "labels": []}
    stats = EncodeStats(records=len(convs))
    for k, (conv, (ids, seg_tokens)) in enumerate(zip(convs, tokenized, strict=True)):
        meta = metas[k]
        last_turn = max((t for _, t in meta), default=0)
        labels: list[int] = []
        n_trained = 0
        for (a, b), (train, turn) in zip(seg_tokens, meta, strict=True):
            # train_on_prompt trains every token, system and prefix included (as LLaMA-Factory does)
            if (train or train_on_prompt) and not (mask_history and turn != last_turn):
                labels += ids[a:b]
                n_trained += b - a
            else:
                labels += [IGNORE] * (b - a)
        if len(ids) > cutoff_len:
            turns = [turn for (a, b), (_, turn) in zip(seg_tokens, meta, strict=True) for _ in range(b - a)]
            ids, labels = _truncate(list(ids), labels, turns, cutoff_len)
            n_trained = len(labels) - labels.count(IGNORE)
            stats.truncated += 1
        if n_trained == 0:
            stats.dropped_no_target += 1
            if len(stats.dropped_examples) < 5:
                stats.dropped_examples.append(conv.source or f"record {k}")
            continue
        out["input_ids"].append(ids)  # a list of its own: the tokenizer made it for this record
        out["labels"].append(labels)
        stats.kept += 1
        stats.tokens += len(ids)
        stats.trained_tokens += n_trained
    return out, stats


def encode_prompts(convs: list[Conversation], template: Any, tokenizer: Any) -> list[list[int]]:
    """Token ids of generation prompts (conversations ending with a user message), for eval and chat."""
    texts = [template.prompt_text(c) for c in convs]
    return tokenizer(texts, add_special_tokens=False, return_attention_mask=False)["input_ids"]

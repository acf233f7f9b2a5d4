"""`Conversation` -> `input_ids` + `labels`: the ONLY place where loss masking is decided.

Data layer, step 5 of the flow. Each conversation is rendered once by its template and tokenized as the
whole text is (align.py finds the tokens and where each segment starts, fast), so tokens are exactly what the
model sees at inference; a token is trained when its first character lies in a trained segment (reply text +
end-of-turn). The rules are `build_labels` and `_truncate`, below. An absurdly long record is cut first, to the
characters around its first trained one that truncation could keep (`_cut`), so memory stays bounded.
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
    shortened: int = 0  # records cut before tokenizing (`_cut`); always among the truncated ones

    def add(self, other: EncodeStats) -> None:
        names = ("records", "kept", "truncated", "dropped_no_target", "tokens", "trained_tokens", "shortened")
        for name in names:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.dropped_examples += other.dropped_examples[: max(0, 5 - len(self.dropped_examples))]


def keep_chars_for(cutoff_len: int) -> int:
    """Characters kept on each side of a record's first trained character before tokenizing. Truncation keeps at
    most cutoff_len tokens on either side of the first trained token, and that many tokens span far fewer
    characters (32 a token would be a text of long whitespace runs), so only an absurdly long record is cut,
    and its kept tokens stay the same."""
    return 32 * cutoff_len + 4096


def _trained(train: bool, turn: int, last_turn: int, train_on_prompt: bool, mask_history: bool) -> bool:
    """Is a segment trained? train_on_prompt trains every token, system and prefix included (as LLaMA-Factory
    does); mask_history trains only the last exchange's reply."""
    return (train or train_on_prompt) and not (mask_history and turn != last_turn)


def _spans(
    template: Any, conv: Conversation, keep: int | None = None, **rules: bool
) -> tuple[str, list[int], list[tuple[bool, int]], bool]:
    segs = template.render(conv, for_training=True)
    texts = [s.text for s in segs]
    meta = [(s.train, s.turn) for s in segs]
    cut = keep is not None and sum(map(len, texts)) > keep
    if cut:
        texts, cut = _cut(texts, meta, keep, **rules)
    starts, pos = [], 0
    for t in texts:
        starts.append(pos)
        pos += len(t)
    return "".join(texts), starts, meta, cut


def _cut(
    texts: list[str], meta: list[tuple[bool, int]], keep: int, train_on_prompt: bool, mask_history: bool
) -> tuple[list[str], bool]:
    """Only the text within `keep` characters of the first trained one can reach the tokens `_truncate` keeps
    (a window of cutoff_len tokens around the first trained token); exchanges further on are dropped there
    anyway, and the counts it decides by stay over cutoff_len. Every segment stays, emptied when outside."""
    last_turn = max((t for _, t in meta), default=0)
    first, pos = 0, 0
    for t, (train, turn) in zip(texts, meta, strict=True):
        if t and _trained(train, turn, last_turn, train_on_prompt, mask_history):
            first = pos
            break
        pos += len(t)
    lo, hi = max(0, first - keep), first + keep
    if lo == 0 and hi >= sum(map(len, texts)):
        return texts, False
    out, pos = [], 0
    for t in texts:
        out.append(t[max(lo - pos, 0) : max(hi - pos, 0)])
        pos += len(t)
    return out, True


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


def render_and_tokenize(
    convs: list[Conversation],
    template: Any,
    tokenizer: Any,
    cutoff_len: int | None = None,
    train_on_prompt: bool = False,
    mask_history: bool = False,
    keep_chars: int | None = None,
) -> tuple[list, list, list[int]]:
    """Stage 1: render each conversation and tokenize the texts in one batched Rust call (which releases the
    GIL, so loader.tokenize overlaps it with stage 2 of the previous chunk). With cutoff_len, an absurdly
    long record is cut first (keep_chars on each side of its first trained character, keep_chars_for by
    default); the indices of those cut are returned too."""
    if keep_chars is None and cutoff_len is not None:
        keep_chars = keep_chars_for(cutoff_len)
    rules = dict(train_on_prompt=train_on_prompt, mask_history=mask_history)
    texts, starts, metas, cut = [], [], [], []
    for k, conv in enumerate(convs):
        text, st, meta, was_cut = _spans(template, conv, keep_chars, **rules)
        texts.append(text)
        starts.append(st)
        metas.append(meta)
        if was_cut:
            cut.append(k)
    return metas, _tokenize(tokenizer, texts, starts), cut


def encode(
    convs: list[Conversation],
    template: Any,
    tokenizer: Any,
    cutoff_len: int,
    train_on_prompt: bool = False,
    mask_history: bool = False,
    keep_chars: int | None = None,
) -> tuple[dict[str, list[list[int]]], EncodeStats]:
    """Batch-encode conversations; records left with no trained token are dropped and counted."""
    settings = dict(cutoff_len=cutoff_len, train_on_prompt=train_on_prompt, mask_history=mask_history)
    stage1 = render_and_tokenize(convs, template, tokenizer, keep_chars=keep_chars, **settings)
    return build_labels(convs, stage1, **settings)


def build_labels(
    convs: list[Conversation],
    stage1: tuple[list, list, list[int]],
    cutoff_len: int,
    train_on_prompt: bool = False,
    mask_history: bool = False,
) -> tuple[dict[str, list[list[int]]], EncodeStats]:
    """Stage 2: labels from the segment token ranges, truncation, and the counts."""
    metas, tokenized, cut = stage1
    out: dict[str, list[list[int]]] = {"input_ids": [], "labels": []}
    stats = EncodeStats(records=len(convs), shortened=len(cut))
    for k, (conv, (ids, seg_tokens)) in enumerate(zip(convs, tokenized, strict=True)):
        meta = metas[k]
        last_turn = max((t for _, t in meta), default=0)
        labels: list[int] = []
        n_trained = 0
        for (a, b), (train, turn) in zip(seg_tokens, meta, strict=True):
            if _trained(train, turn, last_turn, train_on_prompt, mask_history):
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

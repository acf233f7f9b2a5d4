"""Preference pairs (`ranking: true`) -> prompt + chosen and prompt + rejected token rows, for stages dpo and rm.

Data layer, next to tokenize.py, whose masking it reuses: each side is encoded as a conversation ending with
that reply, with only the final reply trained (mask_history); the prompt tokens are the chosen side's and
both sides share them. Truncation (`fit_pair`) keeps the head of both replies and the tail of the prompt.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..errors import DataError
from .documents import is_document
from .formats import Conversation
from .tokenize import IGNORE, EncodeStats, encode, keep_chars_for


def sides(conv: Conversation) -> tuple[Conversation, Conversation]:
    """The conversation ending with the chosen reply, and the same one ending with the rejected reply."""
    if conv.rejected is None:
        raise DataError(f"{conv.source or 'a record'}: no rejected reply (not a preference pair)")
    chosen = replace(conv, rejected=None)
    return chosen, replace(chosen, messages=[*conv.messages[:-1], conv.rejected])


def fit_pair(
    prompt: list[int], chosen: list[int], rejected: list[int], cutoff: int
) -> tuple[list[int], list[int], list[int]]:
    """Fit prompt + the longer reply into `cutoff` tokens: the replies keep their head (at least half the budget
    when they are long), the prompt its tail (the question's end and the assistant header touch the reply)."""
    longest = max(len(chosen), len(rejected))
    if len(prompt) + longest <= cutoff:
        return prompt, chosen, rejected
    reply_keep = min(longest, max(cutoff - len(prompt), cutoff // 2))
    prompt_keep = cutoff - reply_keep
    return prompt[len(prompt) - prompt_keep :], chosen[:reply_keep], rejected[:reply_keep]


def encode_pairs(
    convs: list[Conversation], template: Any, tokenizer: Any, cutoff_len: int
) -> tuple[dict[str, list[list[int]]], EncodeStats]:
    """Rows `chosen_input_ids`, `chosen_labels`, `rejected_input_ids`, `rejected_labels`; a pair is dropped (and
    counted) when truncation leaves either reply empty."""
    pairs = [sides(c) for c in convs]
    settings = dict(cutoff_len=10**9, mask_history=True, keep_chars=keep_chars_for(cutoff_len))
    enc_c, st_c = encode([p[0] for p in pairs], template, tokenizer, **settings)
    enc_r, st_r = encode([p[1] for p in pairs], template, tokenizer, **settings)
    if st_c.kept != len(convs) or st_r.kept != len(convs):  # a final reply always trains its end of turn
        raise DataError(f"{(st_c.dropped_examples + st_r.dropped_examples)[0]}: a reply has no trained token")
    out: dict[str, list[list[int]]] = {
        k: [] for k in ("chosen_input_ids", "chosen_labels", "rejected_input_ids", "rejected_labels")
    }
    stats = EncodeStats(records=len(convs), shortened=max(st_c.shortened, st_r.shortened))
    for k, conv in enumerate(convs):
        c_ids, c_lab = enc_c["input_ids"][k], enc_c["labels"][k]
        r_ids, r_lab = enc_r["input_ids"][k], enc_r["labels"][k]
        c_at = next(i for i, lab in enumerate(c_lab) if lab != IGNORE)
        r_at = next(i for i, lab in enumerate(r_lab) if lab != IGNORE)
        prompt, chosen, rejected = fit_pair(c_ids[:c_at], c_ids[c_at:], r_ids[r_at:], cutoff_len)
        if len(prompt) < c_at or len(chosen) < len(c_ids) - c_at or len(rejected) < len(r_ids) - r_at:
            stats.truncated += 1
        if not chosen or not rejected:
            stats.dropped_no_target += 1
            if len(stats.dropped_examples) < 5:
                stats.dropped_examples.append(conv.source or f"record {k}")
            continue
        for side, reply in (("chosen", chosen), ("rejected", rejected)):
            out[f"{side}_input_ids"].append(prompt + reply)
            out[f"{side}_labels"].append([IGNORE] * len(prompt) + reply)
        stats.kept += 1
        stats.tokens += 2 * len(prompt) + len(chosen) + len(rejected)
        stats.trained_tokens += len(chosen) + len(rejected)
    return out, stats


@dataclass
class PairSet:
    """Encoded pairs as a dataset: item i is {"chosen": {input_ids, labels}, "rejected": {...}}."""

    rows: dict[str, list[list[int]]]
    stats: EncodeStats

    def __len__(self) -> int:
        return len(self.rows["chosen_input_ids"])

    def __getitem__(self, i: int) -> dict[str, dict[str, list[int]]]:
        r = self.rows
        return {
            side: {"input_ids": r[f"{side}_input_ids"][i], "labels": r[f"{side}_labels"][i]}
            for side in ("chosen", "rejected")
        }

    def lengths(self) -> np.ndarray:
        pairs = zip(self.rows["chosen_input_ids"], self.rows["rejected_input_ids"], strict=True)
        return np.array([max(len(a), len(b)) for a, b in pairs])


def tokenize_pairs(convs: list[Conversation], template: Any, tokenizer: Any, cutoff_len: int) -> PairSet:
    return PairSet(*encode_pairs(convs, template, tokenizer, cutoff_len))


def check_stage(stage: str, convs: list[Conversation], names: list[str]) -> None:
    """Which stage may train which data: pairs only in dpo and rm (as in LLaMA-Factory), kto-tagged replies
    only in kto, plain text only in pt, and those stages only their kind. LLaMA-Factory trains pt on the prompts of conversations and drops
    their replies; tuneboard refuses rather than drop them."""
    paired = sum(1 for c in convs if c.rejected is not None)
    docs = sum(1 for c in convs if is_document(c))
    tagged = sum(1 for c in convs if c.kto_tag is not None)
    datasets = ", ".join(names)
    if stage == "kto" and tagged < len(convs):
        raise DataError(
            f"stage kto trains on replies tagged desirable or not, but {len(convs) - tagged} of {len(convs)} "
            f'records of {datasets} have no kto_tag (register the dataset with "columns": {{"kto_tag": ...}}, '
            "a field holding true or false)"
        )
    if stage != "kto" and tagged:
        bad = sum(1 for c in convs if c.kto_tag is False)
        targets = f", which stage {stage} would train as targets" if stage == "sft" else ""
        raise DataError(
            f"{datasets}: {tagged} records are replies tagged desirable or not (kto_tag; {bad} undesirable"
            f"{targets}); train them with stage: kto"
        )
    if stage in ("dpo", "rm") and paired < len(convs):
        raise DataError(
            f"stage {stage} trains on preference pairs, but {len(convs) - paired} of {len(convs)} records of "
            f'{datasets} have no rejected reply (register the dataset with "ranking": true and chosen/rejected)'
        )
    if stage not in ("dpo", "rm") and paired:
        raise DataError(
            f"{datasets}: {paired} records are preference pairs (ranking: true); train them with stage: dpo "
            "or stage: rm, or register a dataset without ranking to fine-tune on its replies with stage: sft"
        )
    if stage == "pt" and docs < len(convs):
        raise DataError(
            f"stage pt trains on plain text, but {len(convs) - docs} of {len(convs)} records of {datasets} "
            'are conversations with replies; register text with "columns": {"prompt": "text"} (or a .txt '
            "file), or fine-tune on the replies with stage: sft"
        )
    if stage != "pt" and docs:
        raise DataError(
            f"{datasets}: {docs} of {len(convs)} records are plain text (no reply); continue pre-training on them with "
            f"stage: pt, or give each record a reply to train stage {stage}"
        )

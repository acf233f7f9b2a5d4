"""KTO data (`kto_tag`) -> each record's prompt + reply row, labelled on the reply, and its KL row, for stage kto.

Data layer, beside pairs.py and through tokenize.py's masking: a record is encoded as a conversation whose final
reply alone is trained (mask_history). The KL row is the same prompt followed by a mismatched reply, that of the
previous record (the first record takes the last one's), as LLaMA-Factory and TRL pair them: the stage estimates
the policy's KL divergence from the reference on it. Truncation keeps the reply's head and the prompt's tail
(pairs.fit_pair); a record whose row or KL row loses its whole reply is dropped and counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import DataError
from .formats import Conversation
from .pairs import fit_pair
from .tokenize import IGNORE, EncodeStats, encode, keep_chars_for

ROWS = ("input_ids", "labels", "kl_input_ids", "kl_labels")


def split_rows(convs: list[Conversation], template: Any, tokenizer: Any, cutoff_len: int):
    """Each record's prompt tokens and reply tokens (the final reply with its end of turn), untruncated."""
    settings = dict(cutoff_len=10**9, mask_history=True, keep_chars=keep_chars_for(cutoff_len))
    enc, stats = encode(convs, template, tokenizer, **settings)
    if stats.kept != len(convs):  # a final reply always trains its end of turn
        raise DataError(f"{stats.dropped_examples[0]}: the reply has no trained token")
    prompts, replies = [], []
    for ids, labels in zip(enc["input_ids"], enc["labels"], strict=True):
        at = next(i for i, lab in enumerate(labels) if lab != IGNORE)
        prompts.append(ids[:at])
        replies.append(ids[at:])
    return prompts, replies, stats.shortened


def encode_kto(
    convs: list[Conversation], template: Any, tokenizer: Any, cutoff_len: int
) -> tuple[dict[str, list], EncodeStats]:
    """Rows `input_ids`, `labels`, `kl_input_ids`, `kl_labels` and the tags `kto_tags`."""
    prompts, replies, shortened = split_rows(convs, template, tokenizer, cutoff_len)
    out: dict[str, list] = {k: [] for k in (*ROWS, "kto_tags")}
    stats = EncodeStats(records=len(convs), shortened=shortened)
    for k, conv in enumerate(convs):
        prompt, reply, _ = fit_pair(prompts[k], replies[k], [], cutoff_len)
        kl_prompt, kl_reply, _ = fit_pair(prompts[k], replies[k - 1], [], cutoff_len)
        if len(prompt) + len(reply) < len(prompts[k]) + len(replies[k]):
            stats.truncated += 1
        if not reply or not kl_reply:
            stats.dropped_no_target += 1
            if len(stats.dropped_examples) < 5:
                stats.dropped_examples.append(conv.source or f"record {k}")
            continue
        out["input_ids"].append(prompt + reply)
        out["labels"].append([IGNORE] * len(prompt) + reply)
        out["kl_input_ids"].append(kl_prompt + kl_reply)
        out["kl_labels"].append([IGNORE] * len(kl_prompt) + kl_reply)
        out["kto_tags"].append(bool(conv.kto_tag))
        stats.kept += 1
        stats.tokens += len(prompt) + len(reply) + len(kl_prompt) + len(kl_reply)
        stats.trained_tokens += len(reply)  # the KL row is only read, never trained
    return out, stats


@dataclass
class KTOSet:
    """Encoded KTO records as a dataset: item i is {input_ids, labels, kl_input_ids, kl_labels, kto_tag}."""

    rows: dict[str, list]
    stats: EncodeStats

    def __len__(self) -> int:
        return len(self.rows["input_ids"])

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = {k: self.rows[k][i] for k in ROWS}
        item["kto_tag"] = self.rows["kto_tags"][i]
        return item

    def lengths(self) -> np.ndarray:
        pairs = zip(self.rows["input_ids"], self.rows["kl_input_ids"], strict=True)
        return np.array([max(len(a), len(b)) for a, b in pairs])

    def counts(self) -> tuple[int, int]:
        """How many desirable and undesirable replies."""
        good = sum(self.rows["kto_tags"])
        return good, len(self) - good


def tokenize_kto(convs: list[Conversation], template: Any, tokenizer: Any, cutoff_len: int) -> KTOSet:
    return KTOSet(*encode_kto(convs, template, tokenizer, cutoff_len))


def tag_counts(convs: list[Conversation]) -> tuple[int, int]:
    """Desirable and undesirable replies among tagged records (`data check`)."""
    good = sum(1 for c in convs if c.kto_tag is True)
    return good, sum(1 for c in convs if c.kto_tag is False)

"""Batches: right-padded rows, or padding-free rows (samples concatenated, attention kept inside each sample).

Data layer, last step of the flow. Padding-free rows carry `position_ids` restarting at 0 per sample and
one of: an explicit 4D block-diagonal causal mask (any attention; on CPU SDPA, restarting position_ids alone
does NOT stop attention from crossing samples, see DESIGN.md), or the samples' boundaries as
`cu_seq_lens_q/k` for an attention that runs per sample (`varlen`, see trainer.packed_sdpa_forward; T^2 -> sum
of L_i^2 attention work), or nothing more (flash-attention 2 finds the boundaries from position_ids).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from .tokenize import IGNORE


@dataclass
class PadCollator:
    pad_id: int
    pad_to_multiple_of: int | None = 8

    def __call__(self, features: list[dict[str, list[int]]]) -> dict[str, Any]:
        import torch

        longest = max(len(f["input_ids"]) for f in features)
        m = self.pad_to_multiple_of
        if m:
            longest = (longest + m - 1) // m * m
        n = len(features)
        ids = torch.full((n, longest), self.pad_id, dtype=torch.long)
        labels = torch.full((n, longest), IGNORE, dtype=torch.long)
        mask = torch.zeros((n, longest), dtype=torch.long)
        for i, f in enumerate(features):
            k = len(f["input_ids"])
            ids[i, :k] = torch.tensor(f["input_ids"])
            labels[i, :k] = torch.tensor(f["labels"])
            mask[i, :k] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}


@dataclass
class PairCollator:
    """Preference pairs: the chosen rows, then the rejected rows, padded into one batch of 2 x pairs."""

    pad_id: int
    pad_to_multiple_of: int | None = 8

    def __call__(self, features: list[dict[str, dict[str, list[int]]]]) -> dict[str, Any]:
        rows = [f["chosen"] for f in features] + [f["rejected"] for f in features]
        return PadCollator(self.pad_id, self.pad_to_multiple_of)(rows)


@dataclass
class KTOCollator:
    """KTO records (data/kto.py): their rows, then their KL rows, padded into one batch of 2 x records, and
    `kto_tags` (True where a reply is desirable)."""

    pad_id: int
    pad_to_multiple_of: int | None = 8

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        rows = [{"input_ids": f["input_ids"], "labels": f["labels"]} for f in features]
        rows += [{"input_ids": f["kl_input_ids"], "labels": f["kl_labels"]} for f in features]
        batch = PadCollator(self.pad_id, self.pad_to_multiple_of)(rows)
        batch["kto_tags"] = torch.tensor([f["kto_tag"] for f in features], dtype=torch.bool)
        return batch


def block_causal_mask(lengths: list[int], dtype: Any) -> Any:
    """[1, 1, T, T] additive mask: causal within each sample, blocked across samples."""
    import torch

    total = sum(lengths)
    seg = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths))
    same = seg[:, None] == seg[None, :]
    causal = torch.ones(total, total, dtype=torch.bool).tril()
    allowed = same & causal
    mask = torch.zeros(total, total, dtype=dtype)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask[None, None]


@dataclass
class PaddingFreeCollator:
    """One row per batch. `flash` (flash-attention 2 on GPU) uses position_ids alone: it finds the boundaries.
    `varlen`: the boundaries as flash-attention's `cu_seq_lens_q/k` and `max_length_q/k`, no 4D mask."""

    flash: bool = False
    varlen: bool = False

    def __call__(self, features: list[dict[str, list[int]]]) -> dict[str, Any]:
        import torch

        ids: list[int] = []
        labels: list[int] = []
        pos: list[int] = []
        lengths = []
        samples = [s for f in features for s in (f["samples"] if "samples" in f else [f])]
        for f in samples:
            k = len(f["input_ids"])
            ids += f["input_ids"]
            # the first token of a sample is never a target (it would be predicted from the previous sample)
            labels += [IGNORE] + list(f["labels"][1:])
            pos += list(range(k))
            lengths.append(k)
        batch = {
            "input_ids": torch.tensor([ids], dtype=torch.long),
            "labels": torch.tensor([labels], dtype=torch.long),
            "position_ids": torch.tensor([pos], dtype=torch.long),
        }
        if self.varlen:
            cu = torch.zeros(len(lengths) + 1, dtype=torch.int32)
            cu[1:] = torch.tensor(lengths).cumsum(0)
            batch.update(
                cu_seq_lens_q=cu, cu_seq_lens_k=cu, max_length_q=max(lengths), max_length_k=max(lengths)
            )
        elif not self.flash:
            batch["attention_mask"] = block_causal_mask(lengths, torch.float32)
        return batch


def pack_groups(lengths: list[int], cutoff_len: int, seed: int) -> list[list[int]]:
    """`packing: true`: sample indices grouped so each group fills up to cutoff_len tokens (first-fit decreasing)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    bins: list[list[int]] = []
    room: list[int] = []
    for i in order:
        n = lengths[i]
        for b, free in enumerate(room):
            if n <= free:
                bins[b].append(i)
                room[b] -= n
                break
        else:
            bins.append([i])
            room.append(cutoff_len - n)
    random.Random(seed).shuffle(bins)
    return bins

"""Packed attention for padding-free rows: SDPA run on each sample of a row, causal inside it.

Model layer; the trainer switches a model to it when the collator packs samples (padding_free).
"""

from __future__ import annotations

from typing import Any

import torch

PACKED_ATTENTION = "tuneboard_packed_sdpa"


def packed_sdpa_forward(module: Any, query: Any, key: Any, value: Any, attention_mask: Any, **kwargs: Any):
    """Attention for padding-free rows: transformers' SDPA run on each sample (boundaries `cu_seq_lens_q` from
    PaddingFreeCollator(varlen=True)), causal inside it. The work is sum(L_i^2) with SDPA's causal kernel
    instead of T^2 for a block-diagonal mask over the whole row (measured: about a third of a padding-free
    step on CPU). Anything else (no boundaries, several rows, sliding windows) is plain SDPA with its mask."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    cu = kwargs.pop("cu_seq_lens_q", None)
    if cu is None or query.shape[0] != 1 or kwargs.get("sliding_window") or query.shape[2] != key.shape[2]:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    for name in ("cu_seq_lens_k", "max_length_q", "max_length_k", "position_ids"):
        kwargs.pop(name, None)
    bounds = cu.tolist()
    parts = [
        sdpa_attention_forward(module, query[:, :, a:b], key[:, :, a:b], value[:, :, a:b], None, **kwargs)[0]
        for a, b in zip(bounds[:-1], bounds[1:], strict=True)
    ]
    return torch.cat(parts, dim=1), None


def use_packed_attention(model: Any) -> None:
    """Switch an SDPA model to packed_sdpa_forward; its masks stay SDPA's (nothing else changes, and the
    name is not saved: transformers does not serialise the attention implementation)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(PACKED_ATTENTION, packed_sdpa_forward)
    AttentionMaskInterface.register(PACKED_ATTENTION, sdpa_mask)
    model.config._attn_implementation = PACKED_ATTENTION

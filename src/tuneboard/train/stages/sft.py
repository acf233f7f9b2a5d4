"""Supervised fine-tuning (and continued pre-training, whose samples are labelled everywhere): the causal-LM
loss computed only at labelled positions.

Training layer, a stage beside dpo.py, kto.py and rm.py; trainer.BaseTrainer does the rest.
"""

from __future__ import annotations

from typing import Any

import torch

from ...data.tokenize import IGNORE
from ...model.fused import hidden_states_out, linear_cross_entropy, plain_head
from ..trainer import BaseTrainer


def labelled_loss(
    model: Any, inputs: dict[str, Any], num_items: Any = None, fused: bool = False
) -> tuple[Any, int]:
    """Cross-entropy over positions whose next token carries a label.

    Hidden states of prompt and padding positions are never projected to the vocabulary: the model
    is asked only for `logits_to_keep` = the labelled positions (a tensor of indices, shared by the rows
    of the batch), which saves the lm_head matmul and the [T, V] logits of every unlabelled position.
    `fused`: where the head is plain (fused.plain_head), the model returns those positions' hidden states and
    fused.linear_cross_entropy projects them in chunks, so no [positions, V] tensor is kept for backward.
    """
    labels = inputs.pop("labels")
    targets = labels[:, 1:]
    valid = targets.ne(IGNORE)
    keep = valid.any(dim=0).nonzero(as_tuple=True)[0]
    n_valid = int(valid.sum())
    if n_valid == 0:  # nothing to learn in this batch (cannot happen after tokenize.py's filter)
        out = model(**inputs, logits_to_keep=1)
        return out.logits.sum() * 0.0, 0
    tgt = targets[:, keep]
    head = plain_head(model) if fused and torch.is_grad_enabled() else None
    if head is not None:
        with hidden_states_out(head):
            hidden = model(**inputs, logits_to_keep=keep, use_cache=False).logits
        loss = linear_cross_entropy(hidden.reshape(-1, hidden.size(-1)), head, tgt.reshape(-1))
    else:
        logits = model(**inputs, logits_to_keep=keep, use_cache=False).logits.float()
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.size(-1)), tgt.reshape(-1), ignore_index=IGNORE, reduction="sum"
        )
    denom = num_items if num_items is not None else n_valid
    if isinstance(denom, torch.Tensor):
        denom = denom.to(loss.device)
    return loss / denom, n_valid


class SFTTrainer(BaseTrainer):
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if model.training:
            self.count_tokens(inputs)
        self.loss_is_scaled_for_ga = num_items_in_batch is not None
        loss, n_valid = labelled_loss(model, dict(inputs), num_items_in_batch, fused=self.fused)
        if num_items_in_batch is not None and self.args.average_tokens_across_devices:
            # num_items_in_batch counts every rank's tokens and DDP averages the gradients: undo the average
            loss = loss * self.accelerator.num_processes
        if model.training:
            self.counter.trained += n_valid
        return (loss, None) if return_outputs else loss

"""Supervised fine-tuning (and continued pre-training, whose samples are labelled everywhere): the causal-LM
loss computed only at labelled positions.

Training layer, a stage beside dpo.py, kto.py and rm.py; trainer.BaseTrainer does the rest.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ...data.tokenize import IGNORE
from ...model.fused import hidden_states_out, linear_cross_entropy, plain_head
from ..trainer import BaseTrainer
from .reference import frozen_copy, placed


def labelled_loss(
    model: Any,
    inputs: dict[str, Any],
    num_items: Any = None,
    fused: bool = False,
    dft: bool = False,
    eaft_alpha: float | None = None,
    reference: Callable[[dict[str, Any], Any], Any] | None = None,
    asft_alpha: float = 0.0,
) -> tuple[Any, int]:
    """Cross-entropy over positions whose next token carries a label.

    Hidden states of prompt and padding positions are never projected to the vocabulary: the model
    is asked only for `logits_to_keep` = the labelled positions (a tensor of indices, shared by the rows
    of the batch), which saves the lm_head matmul and the [T, V] logits of every unlabelled position.
    `fused`: where the head is plain (fused.plain_head), the model returns those positions' hidden states and
    fused.linear_cross_entropy projects them in chunks, so no [positions, V] tensor is kept for backward.
    `dft` (use_dft_loss): each token's cross-entropy weighted by the model's probability of that token, held
    constant in the backward pass (Dynamic Fine-Tuning, Wu et al. 2025). `eaft_alpha` (use_eaft_loss): each
    token's cross-entropy weighted by (H / 3) ** alpha, H the entropy of the model's 20 most likely next tokens
    (renormalised), also held constant. `reference` (use_asft_loss): a function giving the reference model's
    logits at the kept positions; the loss is DFT's plus asft_alpha x KL(reference || model) per labelled token
    (Anchored SFT, as LLaMA-Factory computes it). All three are computed on the plain path.
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
    weighted = dft or eaft_alpha is not None or reference is not None
    head = plain_head(model) if fused and not weighted and torch.is_grad_enabled() else None
    if head is not None:
        with hidden_states_out(head):
            hidden = model(**inputs, logits_to_keep=keep, use_cache=False).logits
        loss = linear_cross_entropy(hidden.reshape(-1, hidden.size(-1)), head, tgt.reshape(-1))
    else:
        logits = model(**inputs, logits_to_keep=keep, use_cache=False).logits.float()
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.size(-1)), tgt.reshape(-1), ignore_index=IGNORE, reduction="none"
        )
        if dft or reference is not None:
            loss = loss * torch.exp(-loss).detach()
        if reference is not None:
            ref = reference(inputs, keep).float()
            kl = torch.nn.functional.kl_div(
                logits.log_softmax(-1), ref.log_softmax(-1), log_target=True, reduction="none"
            ).sum(-1)
            loss = loss + asft_alpha * (kl * valid[:, keep]).reshape(-1)
        elif eaft_alpha is not None:
            loss = loss * entropy_weight(logits.reshape(-1, logits.size(-1)), eaft_alpha)
        loss = loss.sum()  # ignored positions are 0
    denom = num_items if num_items is not None else n_valid
    if isinstance(denom, torch.Tensor):
        denom = denom.to(loss.device)
    return loss / denom, n_valid


@torch.no_grad()
def entropy_weight(logits: Any, alpha: float, k: int = 20) -> Any:
    """EAFT's per-position weight: (entropy of the top-k distribution / 3) ** alpha, without gradient."""
    top = torch.log_softmax(logits.topk(min(k, logits.size(-1)), dim=-1).values, dim=-1)
    entropy = -(top.exp() * top).sum(-1)
    return (entropy / 3.0) ** alpha


class SFTTrainer(BaseTrainer):
    def __init__(self, model: Any, args: Any, data: Any, tokenizer: Any, cfg: Any) -> None:
        super().__init__(model=model, args=args, data=data, tokenizer=tokenizer, cfg=cfg)
        self.ref_model = None  # use_asft_loss with full / freeze: a frozen copy of the starting model
        if cfg.use_asft_loss and not hasattr(model, "disable_adapter"):
            self.ref_model = frozen_copy(model)

    def reference_logits(self, inputs: dict[str, Any], keep: Any) -> Any:
        """The reference model's logits at the kept positions (LoRA: the same model, adapter off)."""
        with torch.no_grad():
            if self.ref_model is not None:
                reference = placed(self.ref_model, self.model)
                return reference(**inputs, logits_to_keep=keep, use_cache=False).logits
            model = self.accelerator.unwrap_model(self.model)
            with model.disable_adapter():
                return model(**inputs, logits_to_keep=keep, use_cache=False).logits

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if model.training:
            self.count_tokens(inputs)
        self.loss_is_scaled_for_ga = num_items_in_batch is not None
        loss, n_valid = labelled_loss(
            model,
            dict(inputs),
            num_items_in_batch,
            fused=self.fused,
            dft=self.cfg.use_dft_loss,
            eaft_alpha=self.cfg.eaft_alpha if self.cfg.use_eaft_loss else None,
            reference=self.reference_logits if self.cfg.use_asft_loss else None,
            asft_alpha=self.cfg.asft_alpha,
        )
        if num_items_in_batch is not None and self.args.average_tokens_across_devices:
            # num_items_in_batch counts every rank's tokens and DDP averages the gradients: undo the average
            loss = loss * self.accelerator.num_processes
        if model.training:
            self.counter.trained += n_valid
        return (loss, None) if return_outputs else loss

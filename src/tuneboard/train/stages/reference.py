"""What the stages that compare the policy with a reference model share (dpo, kto): the log-probs of each row's
labelled tokens, and the reference: with LoRA the same model with its adapter switched off (no second copy), for
full and freeze a frozen copy of the starting model, made once when the trainer is built.

Training layer, beside dpo.py and kto.py; trainer.BaseTrainer does the rest.
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from ...data.tokenize import IGNORE
from ..trainer import BaseTrainer


def sequence_logps(model: Any, inputs: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of the log-probs of each row's labelled tokens, and how many there are. Only positions whose next
    token is labelled in some row are projected to the vocabulary (`logits_to_keep`, as in sft.labelled_loss)."""
    targets = inputs["labels"][:, 1:]
    keep = targets.ne(IGNORE).any(dim=0).nonzero(as_tuple=True)[0]
    fields = {k: v for k, v in inputs.items() if k != "labels"}
    logits = model(**fields, logits_to_keep=keep, use_cache=False).logits.float()
    labels = targets[:, keep]
    # log p(label) = -cross-entropy: its fused log-sum-exp keeps no [rows, positions, vocab] log-softmax for
    # backward, unlike log_softmax + gather (same values; 0 at unlabelled positions)
    picked = -torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.size(-1)), labels.reshape(-1), ignore_index=IGNORE, reduction="none"
    ).view_as(labels)
    return picked.sum(-1), labels.ne(IGNORE).sum(-1)


class ReferenceTrainer(BaseTrainer):
    """A trainer whose loss is a mean over samples (the Trainer divides it by accumulation) and that may ask a
    reference model for log-probs (`reference_logps`)."""

    def __init__(self, model: Any, args: Any, data: Any, tokenizer: Any, cfg: Any) -> None:
        super().__init__(model=model, args=args, data=data, tokenizer=tokenizer, cfg=cfg)
        self.model_accepts_loss_kwargs = False
        self.ref_model = None
        if self.needs_reference(cfg) and not hasattr(model, "disable_adapter"):
            self.ref_model = copy.deepcopy(model).eval().requires_grad_(False)

    def needs_reference(self, cfg: Any) -> bool:
        return True

    def reference_logps(self, model: Any, inputs: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            if self.ref_model is not None:
                return sequence_logps(self.ref_model.to(self.args.device), inputs)
            with self.accelerator.unwrap_model(model).disable_adapter():
                return sequence_logps(model, inputs)

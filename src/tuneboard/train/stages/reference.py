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


def frozen_copy(model: Any) -> Any:
    """The reference for full and freeze training: the starting model, copied once, in eval mode, no gradients."""
    return copy.deepcopy(model).eval().requires_grad_(False)


def placed(reference: Any, policy: Any) -> Any:
    """The frozen copy on the policy's device and in its dtype: DeepSpeed turns the policy (not the copy made
    before it) into bf16, and the two must compute alike."""
    param = next(p for p in policy.parameters() if p.is_floating_point())
    return reference.to(device=param.device, dtype=param.dtype)


class ReferenceTrainer(BaseTrainer):
    """A trainer whose loss is a mean over samples (the Trainer divides it by accumulation) and that may ask a
    reference model for log-probs (`reference_logps`)."""

    def __init__(self, model: Any, args: Any, data: Any, tokenizer: Any, cfg: Any) -> None:
        super().__init__(model=model, args=args, data=data, tokenizer=tokenizer, cfg=cfg)
        self.model_accepts_loss_kwargs = False
        self.ref_model = None
        if self.needs_reference(cfg) and not hasattr(model, "disable_adapter"):
            self.ref_model = frozen_copy(model)

    def needs_reference(self, cfg: Any) -> bool:
        return True

    def reference_logps(self, model: Any, inputs: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            if self.ref_model is not None:
                return sequence_logps(placed(self.ref_model, model), inputs)
            with self.accelerator.unwrap_model(model).disable_adapter():
                return sequence_logps(model, inputs)

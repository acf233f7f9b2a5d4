"""Direct preference optimisation on pairs (data/pairs.py): losses sigmoid (DPO, with label smoothing), hinge
(SLiC), ipo, orpo and simpo, with LLaMA-Factory's keys (pref_beta, pref_loss, pref_ftx, dpo_label_smoothing,
simpo_gamma). As in LLaMA-Factory, ipo, orpo and simpo use each reply's average log-prob, the others its sum.

The reference model (reference.py, shared with kto.py): none for orpo and simpo; with LoRA the same model with
its adapter switched off (no second copy); for full and freeze a frozen copy of the starting model, made once
when the trainer is built.

Training layer, a stage beside sft.py and kto.py; reference.ReferenceTrainer and trainer.BaseTrainer do the rest.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ...data.collate import PairCollator
from .reference import ReferenceTrainer, sequence_logps

AVERAGED = ("ipo", "orpo", "simpo")
REFERENCE_FREE = ("orpo", "simpo")


def preference_loss(
    chosen: torch.Tensor,
    rejected: torch.Tensor,
    ref_chosen: torch.Tensor | None,
    ref_rejected: torch.Tensor | None,
    loss_type: str,
    beta: float,
    label_smoothing: float = 0.0,
    simpo_gamma: float = 0.5,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pair losses and the chosen / rejected rewards, from policy (and reference) log-probs."""
    if (
        loss_type == "orpo"
    ):  # odds ratio (Hong et al. 2024): NLL of the chosen + beta * log-sigmoid of log-odds
        log_odds = (chosen - rejected) - (torch.log1p(-chosen.exp()) - torch.log1p(-rejected.exp()))
        losses = -chosen - beta * F.logsigmoid(log_odds)
        return losses, beta * chosen.detach(), beta * rejected.detach()
    if loss_type == "simpo":  # Meng et al. 2024: a margin gamma, no reference
        losses = -F.logsigmoid(beta * (chosen - rejected) - simpo_gamma)
        return losses, beta * chosen.detach(), beta * rejected.detach()
    assert ref_chosen is not None and ref_rejected is not None
    delta = (chosen - ref_chosen) - (rejected - ref_rejected)
    if loss_type == "sigmoid":  # Rafailov et al. 2023; label smoothing as in conservative DPO
        losses = (
            -F.logsigmoid(beta * delta) * (1 - label_smoothing)
            - F.logsigmoid(-beta * delta) * label_smoothing
        )
    elif loss_type == "hinge":
        losses = torch.relu(1 - beta * delta)
    elif loss_type == "ipo":  # Azar et al. 2023
        losses = (delta - 1 / (2 * beta)) ** 2
    else:
        raise ValueError(f"unknown pref_loss {loss_type!r}")
    return losses, beta * (chosen - ref_chosen).detach(), beta * (rejected - ref_rejected).detach()


class DPOTrainer(ReferenceTrainer):
    def needs_reference(self, cfg: Any) -> bool:
        return cfg.pref_loss not in REFERENCE_FREE

    def make_collator(self, model: Any, data: Any, tokenizer: Any) -> Any:
        return PairCollator(pad_id=tokenizer.pad_token_id)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        cfg = self.cfg
        if model.training:
            self.count_tokens(inputs)
        logps, counts = sequence_logps(model, inputs)
        n = logps.size(0) // 2
        avg = logps / counts.clamp(min=1)
        policy = avg if cfg.pref_loss in AVERAGED else logps
        ref = (None, None)
        if cfg.pref_loss not in REFERENCE_FREE:
            ref_logps, _ = self.reference_logps(model, inputs)
            ref_logps = ref_logps / counts.clamp(min=1) if cfg.pref_loss in AVERAGED else ref_logps
            ref = (ref_logps[:n], ref_logps[n:])
        losses, r_chosen, r_rejected = preference_loss(
            policy[:n],
            policy[n:],
            *ref,
            cfg.pref_loss,
            cfg.pref_beta,
            cfg.dpo_label_smoothing,
            cfg.simpo_gamma,
        )
        if cfg.pref_ftx > 1e-6:  # an SFT term on the chosen replies (LLaMA-Factory: their mean NLL per token)
            losses = losses + cfg.pref_ftx * -avg[:n]
        metrics = {
            "rewards/chosen": r_chosen.mean(),
            "rewards/rejected": r_rejected.mean(),
            "rewards/accuracies": (r_chosen > r_rejected).float().mean(),
            "rewards/margins": (r_chosen - r_rejected).mean(),
            "logps/chosen": policy[:n].detach().mean(),
            "logps/rejected": policy[n:].detach().mean(),
        }
        self.record(metrics, training=model.training)
        if model.training:
            self.counter.trained += int(counts.sum())
        loss = losses.mean()
        return (loss, None) if return_outputs else loss

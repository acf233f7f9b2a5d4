"""Kahneman-Tversky optimisation (Ethayarajh et al. 2024) on replies tagged desirable or not (data/kto.py), with
LLaMA-Factory's keys pref_beta, kto_chosen_weight, kto_rejected_weight and pref_ftx, the loss as TRL and
LLaMA-Factory compute it:

  r  = policy - reference log-prob of a record's reply (summed over its tokens)
  KL = mean over the batch (and every process) of policy - reference log-prob of the KL rows (each prompt with
       another record's reply), held constant and clamped at 0
  desirable: 1 - sigmoid(beta * (r - KL)),  undesirable: 1 - sigmoid(beta * (KL - r)),
  weighted by kto_chosen_weight / kto_rejected_weight and averaged over the batch's records.

With policy = reference every record's loss is 0.5 times its weight. pref_ftx adds pref_ftx times the mean over
the batch's desirable replies of their per-token negative log-likelihood (LLaMA-Factory further multiplies that
term by the batch size over the number of desirable replies; here it weighs as in stage dpo).

Training layer, a stage beside dpo.py, whose reference model it shares (reference.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ...data.collate import KTOCollator
from .reference import ReferenceTrainer, sequence_logps


def kto_loss(
    policy: torch.Tensor,
    reference: torch.Tensor,
    policy_kl: torch.Tensor,
    reference_kl: torch.Tensor,
    desirable: torch.Tensor,
    beta: float,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
    across_processes: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-record losses, rewards beta * r (detached) and the KL estimate, from the log-probs of the records'
    replies and of their KL rows. `across_processes` averages the batch's KL mean over processes (DDP)."""
    kl = (policy_kl - reference_kl).mean().detach()
    if across_processes is not None:
        kl = across_processes(kl)
    kl = kl.clamp(min=0)
    r = policy - reference
    good = 1 - torch.sigmoid(beta * (r - kl))
    bad = 1 - torch.sigmoid(beta * (kl - r))
    losses = torch.where(desirable, desirable_weight * good, undesirable_weight * bad)
    return losses, beta * r.detach(), kl


class KTOTrainer(ReferenceTrainer):
    def make_collator(self, model: Any, data: Any, tokenizer: Any) -> Any:
        return KTOCollator(pad_id=tokenizer.pad_token_id)

    def _mean_over_processes(self, value: torch.Tensor) -> torch.Tensor:
        if self.accelerator.num_processes == 1:
            return value
        return self.accelerator.gather(value.reshape(1)).mean()

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        cfg = self.cfg
        if model.training:
            self.count_tokens(inputs)
        tags = inputs["kto_tags"]
        rows = {k: v for k, v in inputs.items() if k != "kto_tags"}
        n = tags.size(0)
        logps, counts = sequence_logps(model, {k: v[:n] for k, v in rows.items()})
        with torch.no_grad():  # the KL rows only estimate the divergence, which is held constant
            kl_logps, _ = sequence_logps(model, {k: v[n:] for k, v in rows.items()})
        ref_logps, _ = self.reference_logps(model, rows)  # the records' rows and the KL rows, one forward
        losses, rewards, kl = kto_loss(
            logps,
            ref_logps[:n],
            kl_logps,
            ref_logps[n:],
            tags,
            cfg.pref_beta,
            cfg.kto_chosen_weight,
            cfg.kto_rejected_weight,
            self._mean_over_processes,
        )
        loss = losses.mean()
        avg = logps / counts.clamp(min=1)
        if cfg.pref_ftx > 1e-6 and tags.any():  # an SFT term on the desirable replies
            loss = loss + cfg.pref_ftx * -avg[tags].mean()
        metrics: dict[str, Any] = {"kl": kl}
        for name, where in (("chosen", tags), ("rejected", ~tags)):
            if where.any():
                metrics[f"rewards/{name}"] = rewards[where].mean()
                metrics[f"logps/{name}"] = logps[where].detach().mean()
        self.record(metrics, training=model.training)
        if model.training:
            self.counter.trained += int(counts.sum())
        return (loss, None) if return_outputs else loss

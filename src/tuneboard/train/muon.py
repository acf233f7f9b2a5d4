"""`use_muon`: torch.optim.Muon for the 2-D weight matrices inside the layers, AdamW for everything else
(embeddings, LM head, norms, biases), stepped together as one optimizer so that the Trainer's scheduler,
gradient clipping and checkpoints see a single object.

Training layer; optimizer.build asks `build` for it.
"""

from __future__ import annotations

from typing import Any

import torch

OUTSIDE = ("embed", "lm_head", "wte", "wpe", "score", "v_head")  # 2-D weights that are not hidden matrices


def is_hidden_matrix(name: str, param: Any) -> bool:
    return param.ndim == 2 and not any(word in name for word in OUTSIDE)


class MuonWithAdamW(torch.optim.Optimizer):
    """Two optimizers behind one: their parameter groups are this one's (a scheduler that sets `lr` on each
    group reaches both), step / zero_grad go to both, the state dict holds both."""

    def __init__(self, muon: torch.optim.Optimizer, adamw: torch.optim.Optimizer) -> None:
        self.parts = [muon, adamw]
        super().__init__([{"params": [torch.zeros(1)]}], {})  # sets up torch's hooks; groups replaced below
        self.param_groups = [g for part in self.parts for g in part.param_groups]
        self.state = {}  # each part keeps its own

    def step(self, closure: Any = None) -> Any:
        loss = closure() if closure is not None else None
        for part in self.parts:
            part.step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        for part in self.parts:
            part.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        return {"parts": [part.state_dict() for part in self.parts]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        for part, saved in zip(self.parts, state_dict["parts"], strict=True):
            part.load_state_dict(saved)
        self.param_groups = [g for part in self.parts for g in part.param_groups]


def build(
    model: Any, lr: float, weight_decay: float, betas: tuple[float, float], eps: float
) -> MuonWithAdamW:
    """Muon on the trainable hidden matrices (its learning rate scaled to match AdamW's update size, so the
    config's learning_rate fits both), AdamW on the rest."""
    hidden, rest = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (hidden if is_hidden_matrix(name, param) else rest).append(param)
    if not hidden:  # nothing for Muon (e.g. freeze training only norms): a placeholder without gradients
        hidden = [torch.nn.Parameter(torch.zeros(1, 1))]
    muon = torch.optim.Muon(hidden, lr=lr, weight_decay=weight_decay, adjust_lr_fn="match_rms_adamw")
    decay = [p for p in rest if p.ndim >= 2]  # as the Trainer does: no weight decay on norms and biases
    groups = [dict(params=decay), dict(params=[p for p in rest if p.ndim < 2], weight_decay=0.0)]
    groups = [g for g in groups if g["params"]] or [dict(params=[torch.nn.Parameter(torch.zeros(1))])]
    adamw = torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay, betas=betas, eps=eps)
    return MuonWithAdamW(muon, adamw)

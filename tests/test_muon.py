"""train/muon.py: Muon takes the hidden weight matrices; AdamW the rest, with weight decay on matrices only (as
the Trainer does), and a reward model's value head is not a hidden matrix."""

from __future__ import annotations

import torch

from tuneboard.train import muon


class Tiny(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed_tokens = torch.nn.Embedding(10, 4)
        self.q_proj = torch.nn.Linear(4, 4)
        self.norm = torch.nn.LayerNorm(4)
        self.v_head = torch.nn.Linear(4, 1, bias=False)


def test_groups_and_weight_decay():
    model = Tiny()
    opt = muon.build(model, 1e-3, 0.1, (0.9, 0.999), 1e-8)
    muon_part, adamw = opt.parts
    assert [p for g in muon_part.param_groups for p in g["params"]] == [model.q_proj.weight]
    decays = {id(p): g["weight_decay"] for g in adamw.param_groups for p in g["params"]}
    assert decays[id(model.embed_tokens.weight)] == 0.1 and decays[id(model.v_head.weight)] == 0.1
    assert decays[id(model.q_proj.bias)] == 0.0 and decays[id(model.norm.weight)] == 0.0

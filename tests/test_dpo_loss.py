"""train/stages/dpo.preference_loss against the papers' formulas, written out independently here in plain Python
floats (TRL 1.x has no standalone loss function to call on our tensors: its losses live inside its trainer)."""

from __future__ import annotations

import math

import pytest
import torch

from tuneboard.train.stages.dpo import preference_loss


def log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x))


# policy chosen / rejected, reference chosen / rejected (log-probs)
CASES = [(-3.0, -5.0, -4.0, -4.5), (-10.0, -2.0, -9.0, -3.0), (-0.7, -0.9, -0.7, -0.9)]


def paper(
    loss: str, pc: float, pr: float, rc: float, rr: float, beta: float, ls: float, gamma: float
) -> float:
    h = (pc - rc) - (pr - rr)  # DPO's log-ratio difference
    if loss == "sigmoid":  # DPO (Rafailov et al.), conservative with label smoothing ls
        return -(1 - ls) * log_sigmoid(beta * h) - ls * log_sigmoid(-beta * h)
    if loss == "hinge":  # SLiC-HF (Zhao et al.)
        return max(0.0, 1 - beta * h)
    if loss == "ipo":  # IPO (Azar et al.): squared distance to 1 / (2 beta)
        return (h - 1 / (2 * beta)) ** 2
    if loss == "orpo":  # ORPO (Hong et al.): NLL + beta * -log sigmoid(log odds ratio)
        odds = lambda lp: lp - math.log(1 - math.exp(lp))  # noqa: E731
        return -pc - beta * log_sigmoid(odds(pc) - odds(pr))
    if loss == "simpo":  # SimPO (Meng et al.): beta * margin minus gamma, no reference
        return -log_sigmoid(beta * (pc - pr) - gamma)
    raise AssertionError(loss)


@pytest.mark.parametrize("loss", ["sigmoid", "hinge", "ipo", "orpo", "simpo"])
@pytest.mark.parametrize("beta", [0.1, 0.5])
def test_losses_match_the_papers(loss, beta):
    ls, gamma = (0.2 if loss == "sigmoid" else 0.0), 0.3
    pc, pr, rc, rr = (torch.tensor(col, dtype=torch.float64) for col in zip(*CASES, strict=True))
    got, chosen_r, rejected_r = preference_loss(pc, pr, rc, rr, loss, beta, ls, gamma)
    want = [paper(loss, *case, beta, ls, gamma) for case in CASES]
    assert got.tolist() == pytest.approx(want, rel=1e-9, abs=1e-12)
    if loss in ("orpo", "simpo"):
        assert chosen_r.tolist() == pytest.approx([beta * c[0] for c in CASES])
    else:
        assert chosen_r.tolist() == pytest.approx([beta * (c[0] - c[2]) for c in CASES])
        assert rejected_r.tolist() == pytest.approx([beta * (c[1] - c[3]) for c in CASES])


def test_policy_equal_to_reference_gives_ln2():
    x = torch.tensor([-3.0, -7.0])
    loss, _, _ = preference_loss(x, x - 1, x, x - 1, "sigmoid", 0.1)
    assert loss.tolist() == pytest.approx([math.log(2)] * 2)

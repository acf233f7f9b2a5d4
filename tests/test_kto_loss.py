"""train/stages/kto.kto_loss against the KTO formulas (Ethayarajh et al. 2024, as TRL and LLaMA-Factory compute
them), written out independently here in plain Python floats."""

from __future__ import annotations

import math

import pytest
import torch

from tuneboard.train.stages.kto import kto_loss


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


# (policy logp, reference logp, desirable) of each record's reply; the KL rows' policy and reference logps
RECORDS = [(-3.0, -4.0, True), (-10.0, -9.0, False), (-5.5, -5.0, True), (-2.0, -2.5, False)]


def by_hand(records, kl_policy, kl_reference, beta, w_good, w_bad):
    kl = max(0.0, sum(p - r for p, r in zip(kl_policy, kl_reference, strict=True)) / len(kl_policy))
    losses, rewards = [], []
    for policy, reference, good in records:
        r = policy - reference
        if good:
            losses.append(w_good * (1 - sigmoid(beta * (r - kl))))
        else:
            losses.append(w_bad * (1 - sigmoid(beta * (kl - r))))
        rewards.append(beta * r)
    return losses, rewards, kl


def run(records, kl_policy, kl_reference, beta, w_good=1.0, w_bad=1.0):
    policy, reference, good = zip(*records, strict=True)
    t = lambda xs: torch.tensor(xs, dtype=torch.float64)  # noqa: E731
    return kto_loss(
        t(policy), t(reference), t(kl_policy), t(kl_reference), torch.tensor(good), beta, w_good, w_bad
    )


@pytest.mark.parametrize("beta", [0.1, 0.5, 2.0])
@pytest.mark.parametrize(("w_good", "w_bad"), [(1.0, 1.0), (1.0, 1.33), (0.5, 2.0)])
def test_loss_matches_the_formulas(beta, w_good, w_bad):
    kl_policy, kl_reference = [-7.0, -3.0, -4.0, -6.0], [-7.5, -3.2, -3.9, -6.4]  # KL estimate 0.25
    got, rewards, kl = run(RECORDS, kl_policy, kl_reference, beta, w_good, w_bad)
    want, want_rewards, want_kl = by_hand(RECORDS, kl_policy, kl_reference, beta, w_good, w_bad)
    assert want_kl == pytest.approx(0.25)
    assert float(kl) == pytest.approx(want_kl, rel=1e-12)
    assert got.tolist() == pytest.approx(want, rel=1e-12)
    assert rewards.tolist() == pytest.approx(want_rewards, rel=1e-12)


def test_negative_kl_estimate_is_clamped_to_zero():
    kl_policy, kl_reference = [-8.0, -9.0, -4.0, -6.0], [-7.0, -8.0, -4.0, -6.0]  # mean difference -0.5
    got, _, kl = run(RECORDS, kl_policy, kl_reference, 0.3)
    want, _, want_kl = by_hand(RECORDS, kl_policy, kl_reference, 0.3, 1.0, 1.0)
    assert float(kl) == want_kl == 0.0
    assert got.tolist() == pytest.approx(want, rel=1e-12)


def test_policy_equal_to_reference_gives_half_of_each_weight():
    x = torch.tensor([-3.0, -7.0, -1.0])
    good = torch.tensor([True, False, False])
    losses, rewards, kl = kto_loss(x, x, x - 1, x - 1, good, 0.1, 1.0, 1.5)
    assert losses.tolist() == pytest.approx([0.5, 0.75, 0.75]) and float(kl) == 0.0
    assert rewards.tolist() == [0.0, 0.0, 0.0]


def test_kl_is_held_constant():
    policy = torch.tensor([-3.0, -4.0], requires_grad=True)
    policy_kl = torch.tensor([-5.0, -6.0], requires_grad=True)
    losses, _, kl = kto_loss(
        policy,
        torch.tensor([-3.5, -3.0]),
        policy_kl,
        torch.tensor([-6.0, -6.5]),
        torch.tensor([True, False]),
        0.5,
    )
    losses.sum().backward()
    assert policy_kl.grad is None and not kl.requires_grad
    assert policy.grad is not None and policy.grad.abs().sum() > 0

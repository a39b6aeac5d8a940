"""methods §3 losses against values computed by hand on tiny inputs."""

import math

import pytest
import torch

from selfdistill import losses

LOGITS = torch.tensor([[2.0, 0.0, -1.0], [0.5, 1.5, 0.0]])
TARGETS = torch.tensor([0, 2])


def log_softmax_by_hand(z):
    return [[zi - math.log(sum(math.exp(zj) for zj in row)) for zi in row] for row in z]


LOGP = log_softmax_by_hand(LOGITS.tolist())
P = [[math.exp(v) for v in row] for row in LOGP]


def h(q, logp_row):
    return -sum(qk * lk for qk, lk in zip(q, logp_row, strict=True))


def test_cross_entropy_by_hand():
    want = -(LOGP[0][0] + LOGP[1][2]) / 2
    assert losses.cross_entropy(LOGITS, TARGETS).item() == pytest.approx(want, abs=1e-6)


def test_label_smoothing_by_hand_eps_over_k_minus_1():
    eps = 0.3
    q0 = [1 - eps, eps / 2, eps / 2]
    q1 = [eps / 2, eps / 2, 1 - eps]
    want = (h(q0, LOGP[0]) + h(q1, LOGP[1])) / 2
    got = losses.label_smoothing(LOGITS, TARGETS, eps)
    assert got.item() == pytest.approx(want, abs=1e-6)


def test_label_smoothing_uniform_option():
    eps = 0.3
    q0 = [1 - eps + eps / 3, eps / 3, eps / 3]
    q1 = [eps / 3, eps / 3, 1 - eps + eps / 3]
    want = (h(q0, LOGP[0]) + h(q1, LOGP[1])) / 2
    got = losses.label_smoothing(LOGITS, TARGETS, eps, spread="uniform")
    assert got.item() == pytest.approx(want, abs=1e-6)


def test_entropy_regularized_by_hand():
    beta = 0.7
    ce = -(LOGP[0][0] + LOGP[1][2]) / 2
    ent = sum(-sum(p * lp for p, lp in zip(P[i], LOGP[i], strict=True)) for i in range(2)) / 2
    got = losses.entropy_regularized(LOGITS, TARGETS, beta)
    assert got.item() == pytest.approx(ce - beta * ent, abs=1e-6)


def test_self_distillation_by_hand():
    teacher = [[1.0, 3.0, 0.0], [0.0, 0.0, 4.0]]
    alpha, temp = 0.4, 4.0
    q = [[math.exp(v) for v in row] for row in log_softmax_by_hand([[t / temp for t in r]
                                                                    for r in teacher])]
    ce = -(LOGP[0][0] + LOGP[1][2]) / 2
    dist = (h(q[0], LOGP[0]) + h(q[1], LOGP[1])) / 2  # student NOT divided by T, no T^2
    got = losses.self_distillation(LOGITS, TARGETS, torch.tensor(teacher), alpha, temp)
    assert got.item() == pytest.approx((1 - alpha) * ce + alpha * dist, abs=1e-6)


def test_self_distillation_options():
    teacher = torch.tensor([[1.0, 3.0, 0.0], [0.0, 0.0, 4.0]])
    base = losses.self_distillation(LOGITS, TARGETS, teacher, 1.0, 4.0)
    t2 = losses.self_distillation(LOGITS, TARGETS, teacher, 1.0, 4.0, t_squared=True)
    assert t2.item() == pytest.approx(16 * base.item(), rel=1e-6)
    st = losses.self_distillation(LOGITS, TARGETS, teacher, 1.0, 4.0, student_temperature=True)
    want = losses.soft_cross_entropy(torch.softmax(teacher / 4, 1), LOGITS / 4)
    assert st.item() == pytest.approx(want.item(), abs=1e-6)


def test_beta_smoothing_by_hand():
    # ranking network: example 0 has true-class prob high, example 1 low
    ranking = torch.tensor([[5.0, 0.0, 0.0], [0.0, 0.0, -5.0]])
    samples = torch.tensor([0.9, 0.6])  # any order; sorted -> [0.6, 0.9]
    # least confident (example 1) gets smallest b = 0.6; example 0 gets 0.9
    b0, b1 = 0.9, 0.6
    q0 = [b0, (1 - b0) / 2, (1 - b0) / 2]
    q1 = [(1 - b1) / 2, (1 - b1) / 2, b1]
    alpha = 0.6
    ce = -(LOGP[0][0] + LOGP[1][2]) / 2
    smooth = (h(q0, LOGP[0]) + h(q1, LOGP[1])) / 2
    got = losses.beta_smoothing(LOGITS, TARGETS, ranking, samples, alpha)
    assert got.item() == pytest.approx((1 - alpha) * ce + alpha * smooth, abs=1e-6)
    # the order of beta_samples does not matter
    again = losses.beta_smoothing(LOGITS, TARGETS, ranking, samples.flip(0), alpha)
    assert again.item() == pytest.approx(got.item(), abs=1e-7)


def test_beta_targets_pairing_by_rank():
    n, k = 6, 4
    gen = torch.Generator().manual_seed(0)
    targets = torch.randint(0, k, (n,), generator=gen)
    ranking = torch.randn(n, k, generator=gen)
    samples = torch.rand(n, generator=gen)
    q = losses.beta_targets(targets, k, ranking, samples)
    conf = torch.softmax(ranking, 1)[torch.arange(n), targets]
    b = q[torch.arange(n), targets]
    assert torch.equal(torch.argsort(conf), torch.argsort(b))
    assert torch.allclose(torch.sort(b).values, torch.sort(samples).values)
    assert torch.allclose(q.sum(1), torch.ones(n))


def test_beta_samples_shape_error():
    with pytest.raises(ValueError, match="beta_samples"):
        losses.beta_smoothing(LOGITS, TARGETS, LOGITS, torch.rand(3))


@pytest.mark.parametrize("name", ["sd", "bs"])
def test_gradient_flows_only_into_student_logits(name):
    student = LOGITS.clone().requires_grad_(True)
    other = torch.randn(2, 3, requires_grad=True)
    if name == "sd":
        loss = losses.self_distillation(student, TARGETS, other)
    else:
        loss = losses.beta_smoothing(student, TARGETS, other, torch.tensor([0.5, 0.8]))
    loss.backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert other.grad is None


def test_limits_reduce_to_cross_entropy():
    ce = losses.cross_entropy(LOGITS, TARGETS)
    teacher = torch.randn(2, 3)
    assert losses.label_smoothing(LOGITS, TARGETS, 0.0).item() == pytest.approx(ce.item(), abs=1e-6)
    assert losses.entropy_regularized(LOGITS, TARGETS, 0.0).item() == pytest.approx(ce.item())
    sd0 = losses.self_distillation(LOGITS, TARGETS, teacher, alpha=0.0)
    assert sd0.item() == pytest.approx(ce.item(), abs=1e-7)
    bs0 = losses.beta_smoothing(LOGITS, TARGETS, teacher, torch.tensor([0.3, 0.7]), alpha=0.0)
    assert bs0.item() == pytest.approx(ce.item(), abs=1e-7)

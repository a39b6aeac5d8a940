"""Teacher-free losses (methods §3.6-§3.11) against float64 references written from the
definitions: plain Python/numpy loops over samples, sharing no code with selfdistill.losses."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from selfdistill import losses

N = 16  # batch size of the golden tests
REL = 1e-5  # float32 result against the float64 reference


# --- float64 references, one sample at a time ---------------------------------------------


def log_softmax_np(row: np.ndarray) -> np.ndarray:
    row = np.asarray(row, dtype=np.float64)
    shifted = row - row.max()
    return shifted - math.log(np.exp(shifted).sum())


def kl_np(log_q: np.ndarray, log_p: np.ndarray) -> float:
    """KL(q ‖ p) = Σ_k q_k (log q_k - log p_k)."""
    return float(sum(math.exp(lq) * (lq - lp) for lq, lp in zip(log_q, log_p, strict=True)))


def ce_np(z: np.ndarray, y: np.ndarray) -> float:
    return sum(-log_softmax_np(z[i])[y[i]] for i in range(len(y))) / len(y)


def ref_tfkd_reg(z, y, a, temp, alpha, mult, form):
    n, k = z.shape
    kl_sum = 0.0
    for i in range(n):
        pd = np.array([a if c == y[i] else (1 - a) / (k - 1) for c in range(k)])
        log_q = log_softmax_np(pd / temp)
        student = z[i] if form == "code" else z[i] / temp
        kl_sum += kl_np(log_q, log_softmax_np(student))
    distill = mult * kl_sum / (n * k) if form == "code" else kl_sum / n
    return (1 - alpha) * ce_np(z, y) + alpha * distill


def ref_tfkd_self(z, y, zt, alpha, temp, mult):
    n, k = z.shape
    kl_sum = sum(kl_np(log_softmax_np(zt[i] / temp), log_softmax_np(z[i] / temp))
                 for i in range(n))
    return (1 - alpha) * ce_np(z, y) + alpha * temp**2 * mult * kl_sum / (n * k)


def ref_pskd(z, y, prev, alpha_t):
    n, k = z.shape
    total = 0.0
    for i in range(n):
        lp = log_softmax_np(z[i])
        for c in range(k):
            t = (1 - alpha_t) * (1.0 if c == y[i] else 0.0) + alpha_t * prev[i, c]
            total += -t * lp[c]
    return total / n


def ref_cskd(z, y, zp, temp, lam):
    n = z.shape[0]
    kl_sum = sum(kl_np(log_softmax_np(zp[i] / temp), log_softmax_np(z[i] / temp))
                 for i in range(n))
    return ce_np(z, y) + lam * temp**2 * kl_sum / n


def zipf_targets_np(votes, y, power):
    """u over the non-target classes (in class order) from the vote counts of one sample."""
    k = len(votes)
    ranks = [1 + sum(1 for j in range(k) if votes[j] > votes[c]) for c in range(k)]
    w = [ranks[c] ** (-power) for c in range(k) if c != y]
    return [wc / sum(w) for wc in w]


def ref_zipf(z, y, dense, lam, power):
    n, k, positions = dense.shape
    kl_sum = 0.0
    for i in range(n):
        votes = [0] * k
        for p in range(positions):
            votes[int(np.argmax(dense[i, :, p]))] += 1
        u = zipf_targets_np(votes, y[i], power)
        others = [z[i, c] for c in range(k) if c != y[i]]
        kl_sum += kl_np([math.log(v) for v in u], log_softmax_np(others))
    return ce_np(z, y) + lam * kl_sum / n


def ref_ols(z, y, s, alpha):
    n, k = z.shape
    soft = sum(-sum(s[y[i], c] * log_softmax_np(z[i])[c] for c in range(k))
               for i in range(n)) / n
    return (1 - alpha) * ce_np(z, y) + alpha * soft


# --- inputs --------------------------------------------------------------------------------


def make_inputs(k: int, seed: int = 0, positions: int = 16) -> dict[str, torch.Tensor]:
    """float32 tensors; the references read the same values as float64."""
    g = torch.Generator().manual_seed(seed + k)
    return {
        "z": 3 * torch.randn(N, k, generator=g),
        "y": torch.randint(0, k, (N,), generator=g),
        "other": 3 * torch.randn(N, k, generator=g),  # teacher / partner logits
        "prev": torch.softmax(2 * torch.randn(N, k, generator=g), dim=1),
        "dense": torch.randn(N, k, positions, generator=g),
        "matrix": torch.softmax(2 * torch.randn(k, k, generator=g), dim=1),
    }


def np64(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().numpy()


KS = pytest.mark.parametrize("k", [10, 100])


# --- golden tests --------------------------------------------------------------------------


@KS
@pytest.mark.parametrize("form", ["code", "paper"])
def test_tfkd_reg_golden(k, form):
    x = make_inputs(k)
    for a, temp, alpha, mult in [(0.99, 20.0, 0.1, 100.0), (0.9, 4.0, 0.7, 3.0)]:
        got = losses.tfkd_reg(x["z"], x["y"], a, temp, alpha, mult, form=form)
        want = ref_tfkd_reg(np64(x["z"]), x["y"].numpy(), a, temp, alpha, mult, form)
        assert got.dtype == torch.float32 and got.ndim == 0
        assert got.item() == pytest.approx(want, rel=REL)


@KS
def test_tfkd_reg_defaults_are_the_code_recipe(k):
    x = make_inputs(k)
    got = losses.tfkd_reg(x["z"], x["y"])
    want = ref_tfkd_reg(np64(x["z"]), x["y"].numpy(), 0.99, 20.0, 0.1, 100.0, "code")
    assert got.item() == pytest.approx(want, rel=REL)


def test_tfkd_reg_paper_ignores_multiplier():
    x = make_inputs(10)
    one = losses.tfkd_reg(x["z"], x["y"], multiplier=1.0, form="paper")
    many = losses.tfkd_reg(x["z"], x["y"], multiplier=77.0, form="paper")
    assert one.item() == many.item()


def test_tfkd_reg_bad_form_raises():
    x = make_inputs(10)
    with pytest.raises(ValueError, match="form"):
        losses.tfkd_reg(x["z"], x["y"], form="eq9")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_tfkd_reg_virtual_teacher_percentages(dtype):
    """RELATED fact (methods §3.6): T = 20, K = 100, a = 0.99 gives q = 1.050 % on y and
    0.9995 % elsewhere. q is read off the gradient: with α = m = 1, n = 1,
    dL/dz = (p - q)/K, and p = 1/K at z = 0."""
    k = 100
    z = torch.zeros(1, k, dtype=dtype, requires_grad=True)
    y = torch.tensor([3])
    losses.tfkd_reg(z, y, a=0.99, temperature=20.0, alpha=1.0, multiplier=1.0).backward()
    q = (1.0 / k - k * z.grad[0]).double()
    assert f"{100 * q[3].item():#.4g}" == "1.050"
    others = torch.cat([q[:3], q[4:]])
    assert all(f"{100 * v:#.4g}" == "0.9995" for v in others.tolist())
    # and the same q from the definition, independently
    on, off = math.exp(0.99 / 20), math.exp(0.01 / 99 / 20)
    tol = 1e-12 if dtype == torch.float64 else 1e-7
    assert q[3].item() == pytest.approx(on / (on + 99 * off), abs=tol)


@KS
def test_tfkd_self_golden(k):
    x = make_inputs(k)
    for alpha, temp, mult in [(0.95, 6.0, 50.0), (0.4, 2.0, 1.0)]:
        got = losses.tfkd_self(x["z"], x["y"], x["other"], alpha, temp, mult)
        want = ref_tfkd_self(np64(x["z"]), x["y"].numpy(), np64(x["other"]), alpha, temp, mult)
        assert got.dtype == torch.float32 and got.ndim == 0
        assert got.item() == pytest.approx(want, rel=REL)


@KS
def test_pskd_golden(k):
    x = make_inputs(k)
    for alpha_t in [0.0, 0.37, 0.8]:
        got = losses.pskd(x["z"], x["y"], x["prev"], alpha_t)
        want = ref_pskd(np64(x["z"]), x["y"].numpy(), np64(x["prev"]), alpha_t)
        assert got.dtype == torch.float32 and got.ndim == 0
        assert got.item() == pytest.approx(want, rel=REL)


def test_pskd_alpha_zero_is_cross_entropy():
    x = make_inputs(100)
    got = losses.pskd(x["z"], x["y"], x["prev"], 0.0)
    assert got.item() == pytest.approx(F.cross_entropy(x["z"], x["y"]).item(), rel=1e-6)


def test_pskd_alpha_schedule():
    assert losses.pskd_alpha(0, 300) == pytest.approx(0.8 * 1 / 300)
    assert losses.pskd_alpha(149, 300) == pytest.approx(0.4)
    assert losses.pskd_alpha(299, 300) == pytest.approx(0.8)
    assert losses.pskd_alpha(4, 10, alpha_T=0.5) == pytest.approx(0.25)
    assert losses.pskd_alpha(3, 10, alpha_T=-0.5) == 0.0  # max(0, ·)
    with pytest.raises(ValueError):
        losses.pskd_alpha(0, 0)


@KS
def test_cskd_golden(k):
    x = make_inputs(k)
    for temp, lam in [(4.0, 1.0), (1.5, 3.0)]:
        got = losses.cskd(x["z"], x["y"], x["other"], temp, lam)
        want = ref_cskd(np64(x["z"]), x["y"].numpy(), np64(x["other"]), temp, lam)
        assert got.dtype == torch.float32 and got.ndim == 0
        assert got.item() == pytest.approx(want, rel=REL)


@KS
@pytest.mark.parametrize("positions", [4, 64])
def test_zipf_golden(k, positions):
    x = make_inputs(k, positions=positions)  # 4 positions: many tied (zero) votes
    for lam, power in [(0.1, 1.0), (1.0, 2.0)]:
        got = losses.zipf(x["z"], x["y"], x["dense"], lam, power)
        want = ref_zipf(np64(x["z"]), x["y"].numpy(), np64(x["dense"]), lam, power)
        assert got.dtype == torch.float32 and got.ndim == 0
        assert got.item() == pytest.approx(want, rel=REL)


@pytest.mark.parametrize("power", [1.0, 2.0])
def test_zipf_tied_votes_by_hand(power):
    """K = 4, P = 5. Sample 0 (y = 0) votes [2, 2, 1, 0]: ranks [1, 1, 3, 4] (the target ties
    class 1); dropping y leaves ranks [1, 3, 4]. Sample 1 (y = 2) votes [0, 3, 1, 1]: ranks
    [4, 1, 2, 2] (the target ties class 3); dropping y leaves [4, 1, 2]."""
    voted = [[0, 0, 1, 1, 2], [1, 1, 1, 2, 3]]  # the class each position votes for
    dense = torch.zeros(2, 4, 5)
    for i, row in enumerate(voted):
        for p, c in enumerate(row):
            dense[i, c, p] = 5.0
    if power == 1.0:
        u = [[12 / 19, 4 / 19, 3 / 19], [1 / 7, 4 / 7, 2 / 7]]
    else:
        u = [[144 / 169, 16 / 169, 9 / 169], [1 / 21, 16 / 21, 4 / 21]]
    z = [[0.0, 1.0, 2.0, 3.0], [3.0, 0.0, 1.0, 2.0]]
    y = [0, 2]
    lam = 0.1
    want = 0.0
    for i in range(2):
        lse = math.log(sum(math.exp(v) for v in z[i]))
        others = [z[i][c] for c in range(4) if c != y[i]]
        lse_o = math.log(sum(math.exp(v) for v in others))
        kl = sum(uk * (math.log(uk) - (zk - lse_o)) for uk, zk in zip(u[i], others, strict=True))
        want += ((lse - z[i][y[i]]) + lam * kl) / 2
    got = losses.zipf(torch.tensor(z), torch.tensor(y), dense, lam=lam, power=power)
    assert got.item() == pytest.approx(want, rel=1e-6)


def test_zipf_bad_dense_shape_raises():
    x = make_inputs(10)
    with pytest.raises(ValueError, match="dense_logits"):
        losses.zipf(x["z"], x["y"], x["dense"].transpose(1, 2))


@KS
def test_ols_golden(k):
    x = make_inputs(k)
    for alpha in [0.5, 0.2]:
        got = losses.ols(x["z"], x["y"], x["matrix"], alpha)
        want = ref_ols(np64(x["z"]), x["y"].numpy(), np64(x["matrix"]), alpha)
        assert got.dtype == torch.float32 and got.ndim == 0
        assert got.item() == pytest.approx(want, rel=REL)


def test_ols_zero_matrix_is_scaled_cross_entropy():
    x = make_inputs(100)
    zero = torch.zeros(100, 100)
    for alpha in [0.5, 0.3]:
        got = losses.ols(x["z"], x["y"], zero, alpha)
        want = (1 - alpha) * F.cross_entropy(x["z"], x["y"]).item()
        assert got.item() == pytest.approx(want, rel=1e-6)


# --- gradients flow into the logits only ---------------------------------------------------


CALLS = {
    "tfkd_reg": lambda z, y, x: losses.tfkd_reg(z, y),
    "tfkd_reg_paper": lambda z, y, x: losses.tfkd_reg(z, y, form="paper"),
    "tfkd_self": lambda z, y, x: losses.tfkd_self(z, y, x["other"]),
    "pskd": lambda z, y, x: losses.pskd(z, y, x["prev"], 0.5),
    "cskd": lambda z, y, x: losses.cskd(z, y, x["other"]),
    "zipf": lambda z, y, x: losses.zipf(z, y, x["dense"]),
    "ols": lambda z, y, x: losses.ols(z, y, x["matrix"]),
}


@pytest.mark.parametrize("name", sorted(CALLS))
def test_gradient_only_into_logits(name):
    x = {key: t.clone().requires_grad_(t.is_floating_point()) for key, t in
         make_inputs(10).items() if key != "z"}
    z = make_inputs(10)["z"].requires_grad_(True)
    loss = CALLS[name](z, x["y"], x)
    assert loss.ndim == 0
    loss.backward()
    assert z.grad is not None and torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0
    for key in ("other", "prev", "dense", "matrix"):
        assert x[key].grad is None, key

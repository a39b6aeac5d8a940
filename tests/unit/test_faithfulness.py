"""Faithfulness: real training steps of CE, SD and BS give the methods §3 losses.

The fast side is what ``fit`` runs: the objective built by the method registry and
:func:`selfdistill.train.train_step`. The reference side writes each methods §3 formula again
with plain torch ops (not :mod:`selfdistill.losses`), with its own student copy, optimiser
and EMA update. Both start from the same weights and see the same views; their per-step
losses must agree to 1e-6 in fp32. The constants (α, T, the EMA cap) are read from the code
(the registry's options, i.e. the methods §7 loss signatures' defaults), not restated here.
"""

import pytest
import torch
import torch.nn.functional as F

from selfdistill.augment import InputPipeline, build_augment
from selfdistill.methods import get_method
from selfdistill.models import build_model
from selfdistill.train import derive_seed, train_step

A = 3.0  # the BS strength a under test (a swept parameter, methods §3.5)
STEPS, BATCH = 5, 32
# The benchmark's two data kinds: MNIST-1D-shaped float signals, un-augmented (so the SD
# teacher's logits are precomputed once and indexed, as in fit), and CIFAR-shaped uint8
# images with crop + flip and normalisation (the teacher runs on every augmented batch).
KINDS = {"signals": ("cnn1d", (1, 40)), "images": ("cnn_digits", (3, 32, 32))}


def make_views(kind: str) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], bool]:
    """STEPS training views [BATCH, ...] with labels, and whether they are fixed views."""
    g = torch.Generator().manual_seed(3)
    n = STEPS * BATCH
    if kind == "signals":
        x = torch.randn(n, 1, 40, generator=g)
        pipe = InputPipeline(build_augment("none"))
    else:
        x = torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
        pipe = InputPipeline(build_augment("crop_flip", (0.0,), 4),
                             {"mean": [0.49, 0.48, 0.45], "std": [0.25, 0.24, 0.26]})
    y = torch.randint(0, 10, (n,), generator=g)
    aug = torch.Generator().manual_seed(5)
    views = [(pipe.train(x[i * BATCH:(i + 1) * BATCH], aug), y[i * BATCH:(i + 1) * BATCH])
             for i in range(STEPS)]
    return views, pipe.deterministic_train


def reference_loss(method: str, z: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                   net: torch.nn.Module | None, beta_gen: torch.Generator,
                   opts: dict) -> torch.Tensor:
    """methods §3 written out: log p by log_softmax; SD §3.4, BS §3.5 (a = A)."""
    n, k = z.shape
    rows = torch.arange(n)
    logp = F.log_softmax(z, 1)  # [n, K]
    ce = -logp[rows, y].mean()
    if method == "ce":  # §3.1
        return ce
    if method == "sd":  # teacher in eval mode on the same batch; student not divided by T
        net.eval()
        with torch.no_grad():
            q = F.softmax(net(x) / opts["temperature"], 1)  # [n, K]
    else:  # BS: the EMA net in train mode ranks by its true-class probability
        net.train()
        with torch.no_grad():
            conf = F.softmax(net(x), 1)[rows, y]  # [n]
        b = torch.rand(n, generator=beta_gen, dtype=torch.float64).pow(1 / A).float()
        rank = torch.argsort(torch.argsort(conf, stable=True))  # 0: least confident
        b_i = torch.sort(b).values[rank]  # the smallest b to the least confident
        q = ((1 - b_i) / (k - 1)).unsqueeze(1).repeat(1, k)  # [n, K]
        q[rows, y] = b_i
    return (1 - opts["alpha"]) * ce + opts["alpha"] * -(q * logp).sum(1).mean()


def _sgd(model: torch.nn.Module) -> torch.optim.SGD:
    return torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)


def losses_both_ways(kind: str, method: str,
                     ref_opts: dict | None = None) -> tuple[list[float], list[float]]:
    """Per-step losses of the fast path and of the reference (``ref_opts`` override the
    registry's options on the reference side only)."""
    arch, shape = KINDS[kind]
    views, fixed = make_views(kind)
    torch.manual_seed(0)
    fast, ref = build_model(arch, 10, shape), build_model(arch, 10, shape)
    ref.load_state_dict(fast.state_dict())
    torch.manual_seed(1)
    aux = build_model(arch, 10, shape)  # the SD teacher / the BS EMA network's init
    ref_net = build_model(arch, 10, shape)
    ref_net.load_state_dict(aux.state_dict())
    entry = get_method(method)
    state = {"ce": {}, "sd": {"teacher": aux},
             "bs": {"ema_model": aux,
                    "generator": torch.Generator().manual_seed(derive_seed(0, "beta"))}}[method]
    objective = entry.build(A if entry.swept else None, {}, **state)
    opts = {**entry.options(), **(ref_opts or {})}
    beta_gen = torch.Generator().manual_seed(derive_seed(0, "beta"))
    if fixed:  # as fit does: the eval-mode teacher's logits on every fixed view, once
        objective.precompute(lambda net: torch.cat([net(xb) for xb, _ in views]))
    opt_f, opt_r = _sgd(fast), _sgd(ref)
    out_f, out_r = [], []
    for s, (xb, yb) in enumerate(views, start=1):
        fast.train()
        idx = torch.arange((s - 1) * BATCH, s * BATCH) if fixed else None
        loss_f, _ = train_step(fast, objective, opt_f, xb, yb, idx)
        ref.train()
        loss_r = reference_loss(method, ref(xb), xb, yb, ref_net, beta_gen, opts)
        opt_r.zero_grad()
        loss_r.backward()
        opt_r.step()
        if method == "bs":  # methods §3.5 step 1: parameters only, d capped
            d = min(1 - 1 / (s + 1), opts["ema_cap"])
            with torch.no_grad():
                for pe, p in zip(ref_net.parameters(), ref.parameters(), strict=True):
                    pe.copy_(d * pe + (1 - d) * p)
        out_f.append(loss_f.item())
        out_r.append(loss_r.item())
    return out_f, out_r


def test_options_are_the_spec_defaults_the_reference_assumes():
    """The reference writes SD without the off-by-default options (methods §3.4)."""
    sd = get_method("sd").options()
    assert sd["student_temperature"] is False and sd["t_squared"] is False


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("method", ["ce", "sd", "bs"])
def test_training_steps_match_the_spec_formulas(kind, method):
    fast, ref = losses_both_ways(kind, method)
    assert len(fast) == STEPS
    assert max(abs(a - b) for a, b in zip(fast, ref, strict=True)) <= 1e-6


@pytest.mark.parametrize(("method", "change"), [("sd", "alpha"), ("sd", "temperature"),
                                                 ("bs", "alpha")])
def test_a_different_constant_is_caught(method, change):
    """The check is not vacuous: the reference with another α or T disagrees."""
    value = get_method(method).options()[change]
    other = 1 - value if change == "alpha" else value / 2
    fast, ref = losses_both_ways("signals", method, {change: other})
    assert max(abs(a - b) for a, b in zip(fast, ref, strict=True)) > 1e-4

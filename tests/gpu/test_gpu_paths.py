"""GPU only (skipped without CUDA; CI has none): the paths ``test_gpu_throughput.py`` leaves
out. The default mode (fp32, deterministic kernels) on every registered model, bit-identical
reruns; a run stopped mid-epoch and resumed from its resume file on CUDA, equal to the
uninterrupted run bit for bit; ``torch.compile`` against eager; every objective path's
steps under ``torch.cuda.set_sync_debug_mode("error")`` in fp32, tf32 and bf16; the
placement harness's same-device check on real CUDA steps.

The device comes from the project's own selection (:func:`selfdistill.devices.acquire_device`,
with a private lock directory), never from ``.cuda()``.
"""

from __future__ import annotations

import copy
import math
import os

import numpy as np
import pytest
import torch

from selfdistill import train
from selfdistill.augment import build_input_pipeline
from selfdistill.bench import (
    _objective,
    build_objective,
    method_cases,
    precision_batches,
    trajectory,
)
from selfdistill.checkpoint import ResumeIdentity, TrainInterrupted
from selfdistill.data import Split
from selfdistill.devices import acquire_device
from selfdistill.models import MODELS, build_model
from selfdistill.train import TrainConfig, fit, set_determinism, train_step

from ..placement.harness import SameDeviceMode

pytestmark = [pytest.mark.gpu, pytest.mark.slow,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

# Deterministic cuBLAS needs its workspace setting before the first cuBLAS call of the
# process (fit's set_determinism sets it too, possibly after another test used cuBLAS).
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
CASES = method_cases()
PRECISIONS = ("fp32", "tf32", "bf16")
SHAPES = {"mlp": (1, 40), "cnn1d": (1, 40), "cnn_digits": (1, 8, 8), "resnet18": (3, 32, 32),
          "resnet34": (3, 32, 32), "densenet_bc100": (3, 32, 32)}
TIMING = {"time_s", "train_step_s", "step_start_unix", "step_end_unix"}


@pytest.fixture(scope="module")
def device(tmp_path_factory):
    """A CUDA device leased as a training job leases one (slot lock in a private dir)."""
    with acquire_device("cuda", want_gpu=True,
                        lock_dir=tmp_path_factory.mktemp("gpu-locks")) as lease:
        yield lease.device


def data(kind: str, n: int, shape: tuple[int, ...] = (3, 32, 32), seed: int = 0):
    """Random train/val splits and the matching input pipeline and augmentation."""
    rng = np.random.default_rng(seed)
    if kind == "signals":
        x = rng.normal(size=(n, *shape)).astype(np.float32)
        pipe, aug = build_input_pipeline("none"), "none"
    else:
        x = rng.integers(0, 256, (n, *shape), dtype=np.uint8)
        aug = "crop_flip"
        pipe = build_input_pipeline(aug, 4, {"mean": [0.5] * shape[0], "std": [0.25] * shape[0]})
    y = rng.integers(0, 10, n).astype(np.int64)
    return Split(x, y, "train"), Split(x[:256], y[:256], "val"), pipe, aug


def without_timing(history):
    return [{k: v for k, v in row.items() if k not in TIMING} for row in history]


def same_state(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# --------------------------------------------------------------------------- default mode


@pytest.mark.parametrize("arch", sorted(MODELS))
def test_default_mode_trains_every_model_bit_identically(device, arch):
    """fp32 with deterministic kernels (the default execution block): no model uses an
    operation that deterministic mode refuses on CUDA, and two runs give the same bits."""
    shape = SHAPES[arch]
    kind = "images" if len(shape) == 3 else "signals"
    tr, va, pipe, aug = data(kind, 256, shape)
    cfg = TrainConfig(epochs=2, milestones=(1,), seed=0, batch_size=64, augment=aug,
                      channels_last=kind == "images")  # precision fp32, deterministic True
    results = []
    for _ in range(2):
        torch.manual_seed(0)
        results.append(fit(build_model(arch, 10, shape),
                           _objective("ce", arch, 10, shape, device), tr, va, cfg, device,
                           pipeline=pipe))
    assert all(math.isfinite(r["train_loss"]) for r in results[0].history)
    assert without_timing(results[0].history) == without_timing(results[1].history)
    assert same_state(results[0].model, results[1].model)


# --------------------------------------------------------------------------- resume


class StopAfter:
    """fit's SigtermFlag stand-in: ``raised`` turns true at the ``n``-th poll (a step)."""

    def __init__(self, n: int) -> None:
        self.n, self.polls = n, 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    @property
    def raised(self) -> bool:
        self.polls += 1
        return self.polls >= self.n


@pytest.mark.parametrize("method", ["bs", "sd"])
def test_resume_mid_epoch_on_cuda_equals_the_uninterrupted_run(device, tmp_path, monkeypatch,
                                                                method):
    """Stopped before its 6th step (the 2nd of epoch 2, 4 steps each), the resume file written on CUDA
    (generator states, CUDA RNG, optimiser, EMA network or teacher cache) is read back by a
    fresh fit, which finishes with the same weights and history as a run never stopped."""
    tr, va, pipe, aug = data("images", 256)
    cfg = TrainConfig(epochs=3, milestones=(2,), seed=0, batch_size=64, augment=aug,
                      channels_last=True)
    case = next(c for c in CASES if c.name == method)

    def run(stop_at: int | None, ident: ResumeIdentity):
        monkeypatch.setattr(train, "SigtermFlag", lambda: StopAfter(stop_at or 10 ** 9))
        torch.manual_seed(0)
        return fit(build_model("resnet18", 10, (3, 32, 32)),
                   build_objective(case, "resnet18", 10, (3, 32, 32), device), tr, va, cfg,
                   device, resume=ident, pipeline=pipe)

    reference = run(None, ResumeIdentity())
    ident = ResumeIdentity(tmp_path / "resume.pt", "f" * 64, "[gpu resume]")
    with pytest.raises(TrainInterrupted):
        run(6, ident)
    resumed = run(None, ident)
    assert resumed.resumed_from_epoch == 1
    assert without_timing(resumed.history) == without_timing(reference.history)
    assert same_state(resumed.model, reference.model)


# --------------------------------------------------------------------------- compile


def test_compiled_step_agrees_with_eager(device):
    """The same init on the same batches, fp32, deterministic kernels: the first step's loss
    agrees to 1e-3 relative (same weights: only fusion and summation order differ), and the
    compiled trajectory stays finite."""
    batches, k = precision_batches("cifar", 12, 64, device)
    torch.manual_seed(0)
    init = build_model("resnet18", k, (3, 32, 32)).to(device)
    init.to(memory_format=torch.channels_last)
    set_determinism(True, device, compiling=True)
    eager = trajectory(copy.deepcopy(init), _objective("ce", "resnet18", k, (3, 32, 32), device),
                       batches, "fp32")[0]
    compiled = trajectory(copy.deepcopy(init), _objective("ce", "resnet18", k, (3, 32, 32),
                                                          device),
                          batches, "fp32", compile_model=True)[0]
    assert all(math.isfinite(v) for v in compiled)
    assert abs(compiled[0] - eager[0]) <= 1e-3 * abs(eager[0])


def test_fit_with_compile_true(device):
    tr, va, pipe, aug = data("images", 256)
    cfg = TrainConfig(epochs=1, milestones=(), seed=0, batch_size=64, augment=aug,
                      channels_last=True, compile=True)
    torch.manual_seed(0)
    result = fit(build_model("resnet18", 10, (3, 32, 32)),
                 _objective("ce", "resnet18", 10, (3, 32, 32), device), tr, va, cfg, device,
                 pipeline=pipe)
    assert math.isfinite(result.history[0]["train_loss"])


# --------------------------------------------------------------------------- host syncs


@pytest.mark.parametrize("kind, precision", [("images", p) for p in PRECISIONS] +
                         [("signals", "fp32")])
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_every_objective_path_never_synchronises_the_host(device, case, kind, precision):
    """fit's step loop under ``torch.cuda.set_sync_debug_mode("error")``: fp32 with
    deterministic kernels (the default), tf32 and bf16 without."""
    shape = (3, 32, 32) if kind == "images" else (1, 40)
    arch = "resnet18" if kind == "images" else "cnn1d"
    tr, va, pipe, aug = data(kind, 384, shape)
    cfg = TrainConfig(epochs=2, milestones=(1,), seed=0, augment=aug,
                      channels_last=kind == "images", precision=precision,
                      deterministic=precision == "fp32")
    torch.manual_seed(0)
    result = fit(build_model(arch, 10, shape), build_objective(case, arch, 10, shape, device),
                 tr, va, cfg, device, pipeline=pipe, sync_check=True)
    assert torch.cuda.get_sync_debug_mode() == 0
    assert all(math.isfinite(r["train_loss"]) for r in result.history)


# --------------------------------------------------------------------------- placement


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_cuda_steps_keep_every_operator_on_one_device(device, case):
    """The placement tier's dispatch check on real CUDA steps (forward, backward, SGD, the
    objective's update), bf16 autocast on: only 0-dim CPU scalars may meet CUDA tensors."""
    tr, _, pipe, _ = data("images", 128)
    model = build_model("resnet18", 10, (3, 32, 32)).to(device)
    model.to(memory_format=torch.channels_last)
    objective = build_objective(case, "resnet18", 10, (3, 32, 32), device)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = torch.as_tensor(tr.x, device=device)
    y = torch.as_tensor(tr.y, device=device)
    gen = torch.Generator().manual_seed(0)
    with SameDeviceMode() as mode:
        for lo in (0, 64):
            xb = pipe.train(x[lo:lo + 64], gen).contiguous(memory_format=torch.channels_last)
            train_step(model, objective, opt, xb, y[lo:lo + 64], precision="bf16")
    assert mode.ops > 100

"""CPU stand-in for CUDA's per-step host synchronisation: a tensor built from host data
(a Python number, a list, a numpy array) on the training device is a blocking
host-to-device copy on CUDA. Every method's training steps (every objective path of
:func:`selfdistill.bench.method_cases`) run through the real ``fit`` with such calls recorded
inside the step loop (``run_epoch``); there must be none.

What is recorded: ``torch.tensor`` / ``torch.as_tensor`` / ``torch.asarray`` of host data given
a ``device``, and ``Tensor.new_tensor`` of host data (it lands on its tensor's device). Not
recorded, because none copies host data to a device: ``torch.full``/``full_like``/
``scalar_tensor``/``fill_`` with a Python number (the number is a kernel argument), and host
data made into a CPU tensor without a device (a generator's draws, moved later by
``augment.host_to_device``, pinned and non-blocking). ``tests/gpu`` runs the same steps under
``torch.cuda.set_sync_debug_mode("error")`` on a real device.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode

from selfdistill import train
from selfdistill.augment import build_input_pipeline
from selfdistill.bench import build_objective, method_cases
from selfdistill.data import Split
from selfdistill.models import build_model
from selfdistill.train import TrainConfig, fit

CASES = method_cases()
_FACTORIES = {torch.tensor, torch.as_tensor, torch.asarray}


def _host_data(data: object) -> bool:
    return not isinstance(data, torch.Tensor)


class HostCopyRecorder(TorchFunctionMode):
    """Records each call that builds a device tensor from host data (see the module doc)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _FACTORIES and args and _host_data(args[0]):
            has_device = "device" in kwargs or any(
                isinstance(a, (torch.device, str)) for a in args[1:])
            if has_device:
                self.calls.append(f"{func.__name__}({type(args[0]).__name__}, "
                                  f"device={kwargs.get('device')})")
        elif func is torch.Tensor.new_tensor and len(args) > 1 and _host_data(args[1]):
            self.calls.append(f"Tensor.new_tensor({type(args[1]).__name__})")
        return func(*args, **kwargs)


def _recording_epochs(monkeypatch) -> HostCopyRecorder:
    """Patch fit's ``run_epoch`` (the step loop) to run under a fresh recorder."""
    recorder = HostCopyRecorder()
    real = train.run_epoch

    def run_epoch(*args, **kwargs):
        with recorder:
            return real(*args, **kwargs)

    monkeypatch.setattr(train, "run_epoch", run_epoch)
    return recorder


def tiny_run(kind: str, n: int = 48) -> tuple[Split, Split, str, tuple[int, ...], TrainConfig,
                                               object]:
    """Train/val splits, arch, input shape, recipe and pipeline of a few-step run:
    ``images`` uint8 8x8 RGB, crop+flip, normalised, channels_last (the CIFAR path);
    ``signals`` float [1, 40], no augmentation (SD's precomputed teacher table, by index);
    ``resized`` uint8 12x12 trained at 8 px (the Tiny ImageNet path)."""
    rng = np.random.default_rng(0)
    norm = {"mean": [0.5, 0.4, 0.3], "std": [0.25, 0.25, 0.25]}
    if kind == "signals":
        x = rng.normal(size=(n, 1, 40)).astype(np.float32)
        arch, shape, pipe, aug = "cnn1d", (1, 40), build_input_pipeline("none"), "none"
    elif kind == "images":
        x = rng.integers(0, 256, (n, 3, 8, 8), dtype=np.uint8)
        arch, shape, aug = "cnn_digits", (3, 8, 8), "crop_flip"
        pipe = build_input_pipeline(aug, 2, norm)
    else:
        x = rng.integers(0, 256, (n, 3, 12, 12), dtype=np.uint8)
        arch, shape, aug = "cnn_digits", (3, 8, 8), "resized_crop_flip"
        pipe = build_input_pipeline(aug, 4, norm, 8)
    y = rng.integers(0, 10, n).astype(np.int64)
    tr, va = Split(x, y, "train"), Split(x[:16], y[:16], "val")
    cfg = TrainConfig(epochs=1, milestones=(), seed=0, batch_size=16, augment=aug,
                      channels_last=kind != "signals")
    return tr, va, arch, shape, cfg, pipe


@pytest.mark.parametrize("kind", ["signals", "images", "resized"])
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_no_step_builds_a_device_tensor_from_host_data(monkeypatch, case, kind):
    recorder = _recording_epochs(monkeypatch)
    tr, va, arch, shape, cfg, pipe = tiny_run(kind)
    dev = torch.device("cpu")
    objective = build_objective(case, arch, 10, shape, dev)
    torch.manual_seed(0)
    result = fit(build_model(arch, 10, shape), objective, tr, va, cfg, dev, pipeline=pipe)
    assert result.history[0]["train_loss"] > 0  # the steps ran (3 of them)
    assert recorder.calls == [], (
        f"{case.name} ({kind}): the step loop builds device tensors from host data, each a "
        f"blocking host-to-device copy per step on CUDA: {sorted(set(recorder.calls))}")


def test_recorder_sees_a_planted_per_step_copy(monkeypatch):
    """The recorder is live: an objective that builds its weight from a Python float on the
    logits' device at every step (the old label-smoothing path) is caught, once per step."""
    from selfdistill.objectives import CrossEntropy

    class Planted(CrossEntropy):
        def loss(self, logits, x, y, idx=None):
            w = torch.as_tensor(0.5, dtype=torch.float32, device=logits.device)
            return super().loss(logits, x, y, idx) * w

    recorder = _recording_epochs(monkeypatch)
    tr, va, arch, shape, cfg, pipe = tiny_run("signals")
    fit(build_model(arch, 10, shape), Planted(), tr, va, cfg, torch.device("cpu"),
        pipeline=pipe)
    assert recorder.calls == ["as_tensor(float, device=cpu)"] * 3


def test_recorder_ignores_host_tensors_and_fills():
    """Host-side draws (no device) and scalar fills are not copies; new_tensor of a list is."""
    with HostCopyRecorder() as rec:
        torch.tensor([0.75, 1.25], dtype=torch.float64)  # a host tensor, moved later
        torch.full((2, 3), 0.1)
        base = torch.zeros(2)
        torch.as_tensor(base, device="cpu")
        base.new_tensor([1.0])
    assert rec.calls == ["Tensor.new_tensor(list)"]

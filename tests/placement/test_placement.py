"""Device placement without a GPU (harness.py says how, and what it cannot see).

Every objective path (:func:`selfdistill.bench.method_cases`) on a signal model and on an
image model (crop+flip, normalisation, channels_last): training steps on the ``meta``
device under :class:`SameDeviceMode`; then a short ``fit`` that writes a resume file, is
stopped mid-epoch (the SIGTERM flag, raised without a signal) and resumed from the file,
under the host/device tags of :class:`HostTagMode`; then ``run.train_run`` (CE, then SD
loading its teacher from ``model.pt``). Planted bugs show that each instrument catches a
tensor on the wrong device.
"""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch

from selfdistill import objectives, train
from selfdistill.augment import InputPipeline, build_input_pipeline, host_to_device
from selfdistill.bench import build_objective, method_cases
from selfdistill.checkpoint import ResumeIdentity, TrainInterrupted
from selfdistill.data import Split, prepare_dataset
from selfdistill.models import build_model
from selfdistill.objectives import CrossEntropy
from selfdistill.run import RunSpec, train_run
from selfdistill.train import TrainConfig, fit, train_step

from .harness import HostTagMode, PlacementError, SameDeviceMode, placement_checked

pytestmark = pytest.mark.placement

CASES = method_cases()
KINDS = ("signals", "images")


def setting(kind: str, n: int = 48):
    """(train, val, arch, shape, cfg, pipeline) of a run of three steps per epoch."""
    rng = np.random.default_rng(0)
    if kind == "signals":
        x = rng.normal(size=(n, 1, 40)).astype(np.float32)
        arch, shape, aug, pipe = "cnn1d", (1, 40), "none", build_input_pipeline("none")
    else:
        x = rng.integers(0, 256, (n, 3, 8, 8), dtype=np.uint8)
        arch, shape, aug = "cnn_digits", (3, 8, 8), "crop_flip"
        pipe = build_input_pipeline(aug, 2, {"mean": [0.5, 0.4, 0.3], "std": [0.2] * 3})
    y = rng.integers(0, 10, n).astype(np.int64)
    cfg = TrainConfig(epochs=2, milestones=(1,), seed=0, batch_size=16, augment=aug,
                      channels_last=kind == "images")
    return Split(x, y, "train"), Split(x[:16], y[:16], "val"), arch, shape, cfg, pipe


# --------------------------------------------------------------------------- meta device


@pytest.fixture
def meta_autocast(monkeypatch):
    """The meta device has no autocast: the (CPU no-op) autocast contexts become plain ones."""
    monkeypatch.setattr(train, "autocast", lambda precision, device: contextlib.nullcontext())
    monkeypatch.setattr(objectives, "full_precision", lambda x: contextlib.nullcontext())


def meta_steps(case, kind: str, steps: int = 2, objective=None) -> SameDeviceMode:
    """``steps`` of fit's step (training view, train_step) with everything on ``meta``."""
    tr, _, arch, shape, cfg, pipe = setting(kind)
    dev = torch.device("meta")
    objective = objective or build_objective(case, arch, 10, shape, dev)
    model = build_model(arch, 10, shape).to(dev)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    x, y = torch.as_tensor(tr.x, device=dev), torch.as_tensor(tr.y, device=dev)
    gen = torch.Generator().manual_seed(0)

    def view(xb):  # fit's training view: augmentation, then the step's layout
        xb = pipe.train(xb, gen)
        return xb.contiguous(memory_format=torch.channels_last) if cfg.channels_last else xb

    with SameDeviceMode() as mode:
        objective.bind(model, x, y, view)  # as fit: state sized by the training split
        objective.start_epoch(0, 1)
        for step in range(steps):
            idx = host_to_device(torch.arange(step * 16, step * 16 + 16), dev)
            xb = view(x.index_select(0, idx))
            loss, _ = train_step(model, objective, opt, xb, y.index_select(0, idx), idx)
            assert loss.device.type == "meta"
        objective.end_epoch()
    return mode


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_training_steps_on_meta_keep_every_operator_on_one_device(meta_autocast, case, kind):
    mode = meta_steps(case, kind)
    assert mode.ops > 100  # forward, backward and the optimiser were all dispatched


def test_meta_steps_catch_a_planted_cpu_tensor(meta_autocast):
    class Planted(CrossEntropy):
        def loss(self, logits, x, y, idx=None):
            return (super().loss(logits, x, y, idx) * torch.ones(logits.shape[0])).mean()

    with pytest.raises(PlacementError, match=r"\['cpu', 'meta'\]"):
        meta_steps(CASES[0], "signals", objective=Planted())


# --------------------------------------------------------------------------- fit, resume


class StopAfter:
    """Stands in for fit's SigtermFlag: ``raised`` turns true at the ``n``-th poll."""

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


def fit_stop_resume(monkeypatch, tmp_path, case, kind, objective_for=None) -> HostTagMode:
    """Under the host tags: fit stopped before its 5th step (the 2nd of epoch 2) after
    writing its resume files, then fit again from the file to the end; both runs' objects are built
    inside the check, as run.train_run builds them."""
    ident = ResumeIdentity(tmp_path / "resume.pt", "f" * 64, "[placement]")
    with placement_checked() as mode:
        for attempt in ("stopped", "resumed"):
            tr, va, arch, shape, cfg, pipe = setting(kind)
            dev = torch.device("cpu")
            objective = (objective_for() if objective_for is not None
                         else build_objective(case, arch, 10, shape, dev))
            torch.manual_seed(0)
            model = build_model(arch, 10, shape)
            stop = StopAfter(5 if attempt == "stopped" else 10 ** 9)
            monkeypatch.setattr(train, "SigtermFlag", lambda flag=stop: flag)
            if attempt == "stopped":
                with pytest.raises(TrainInterrupted):
                    fit(model, objective, tr, va, cfg, dev, resume=ident, pipeline=pipe)
            else:
                result = fit(model, objective, tr, va, cfg, dev, resume=ident, pipeline=pipe)
                assert result.resumed_from_epoch == 1 and len(result.history) == 2
    return mode


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_fit_stop_and_resume_never_mix_host_and_device_tensors(monkeypatch, tmp_path, case,
                                                               kind):
    mode = fit_stop_resume(monkeypatch, tmp_path, case, kind)
    # the index orders, the generators' draws and the resume file's tensors were host ones
    assert mode.checked > 1000 and mode.host_tags > 100 and mode.mixes == []


def test_host_tags_catch_a_planted_host_tensor_in_a_step(monkeypatch, tmp_path):
    """A per-example weight made without device= meets the device logits: caught, naming
    the line; a 0-dim host tensor (a scalar to CUDA) is allowed."""

    class Planted(CrossEntropy):
        def loss(self, logits, x, y, idx=None):
            scale = torch.tensor(2.0)  # 0-dim: CUDA takes it as a scalar
            per_example = torch.nn.functional.cross_entropy(logits, y, reduction="none")
            return (per_example * scale * torch.ones(y.shape[0])).mean()

    with pytest.raises(PlacementError, match=r"mixes host and device.*test_placement.py"):
        fit_stop_resume(monkeypatch, tmp_path, None, "signals", objective_for=Planted)


def test_host_tags_catch_an_augmentation_that_indexes_with_host_draws():
    """Random offsets drawn on the CPU generator and used as an index without
    host_to_device: on CUDA a hidden blocking copy per step (or an error); caught."""

    def shift(x, gen):
        off = torch.randint(0, 2, (x.shape[0],), generator=gen)  # host, never moved
        return x[torch.arange(x.shape[0], device=x.device), :, :] * (1 + off.view(-1, 1, 1))

    tr, va, arch, shape, cfg, _ = setting("signals")
    with placement_checked() as mode, pytest.raises(PlacementError, match="mixes"):
        fit(build_model(arch, 10, shape), CrossEntropy(), tr, va, cfg, torch.device("cpu"),
            pipeline=InputPipeline(shift))
    assert len(mode.mixes) == 1


def test_host_tags_catch_objective_state_restored_without_a_move(monkeypatch, tmp_path):
    """A resume bug: an objective keeps a tensor in its state and, after a resume, uses the
    file's copy (read onto the CPU) without moving it. The fresh run passes; the resumed run
    is caught, since every tensor torch.load returns is on the host."""

    class Stateful(CrossEntropy):
        def __init__(self):
            self.weight = torch.ones(10, device="cpu")

        def loss(self, logits, x, y, idx=None):
            return torch.nn.functional.cross_entropy(logits, y, weight=self.weight)

        def state_dict(self):
            return {"weight": self.weight}

        def load_state_dict(self, state):
            self.weight = state["weight"]  # the bug: no .to(device)

    with pytest.raises(PlacementError, match="cross_entropy mixes host and device"):
        fit_stop_resume(monkeypatch, tmp_path, None, "signals", objective_for=Stateful)


# --------------------------------------------------------------------------- run.train_run


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "mnist1d"
    prepare_dataset("mnist1d", {"source": "mnist1d", "num_samples": 200, "train_fraction": 0.8,
                                "generator_seed": 42, "val_size": 40, "split_seed": 0}, out)
    return out


def test_train_run_ce_then_sd_from_its_checkpoint_never_mix(data_dir, tmp_path):
    """The rules' code path: data files, device lease, objective providers, the SD teacher
    read from model.pt, predictions and outputs."""
    cfg = TrainConfig(epochs=2, milestones=(1,), seed=0, batch_size=32)

    def spec(method, gen, teacher=None):
        return RunSpec(dataset_dir=str(data_dir), arch="cnn1d", method=method, param=None,
                       seed=0, gen=gen, out_dir=str(tmp_path / method), train=cfg,
                       teacher=teacher, dataset="mnist1d", device="cpu")

    with placement_checked() as mode:
        train_run(spec("ce", 0))
        train_run(spec("sd", 1, str(tmp_path / "ce" / "model.pt")))
    assert (tmp_path / "sd" / "preds.npz").exists() and mode.checked > 1000

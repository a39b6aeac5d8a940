"""Resume files are trusted only after their header checks out, and load onto any device.

- A planted ``resume.pt`` whose pickle runs code (a colleague's results tree, a CLI --out) is
  never executed: it is named in the log, set aside as ``resume.pt.rejected``, and the run
  starts fresh (methods §2; docs/reliability.md "What is trusted").
- The saved random streams are restored as CPU byte tensors whatever the training device: the
  ``meta`` device stands in for CUDA here (``Generator.set_state`` refuses both).
"""

import logging
import os
import pickle
import zipfile

import numpy as np
import pytest
import torch

from selfdistill.checkpoint import (
    ResumeFileError,
    ResumeIdentity,
    ResumeState,
    read_resume,
    save_resume,
    try_resume,
)
from selfdistill.models import build_model
from selfdistill.objectives import BetaSmoothing


def parts(seed: int = 0):
    torch.manual_seed(seed)
    model = build_model("cnn1d", 10, (1, 40))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[2, 4])
    obj = BetaSmoothing(build_model("cnn1d", 10, (1, 40)), a=3.0,
                        generator=torch.Generator().manual_seed(5))
    gens = {"order": torch.Generator().manual_seed(1), "augment": torch.Generator().manual_seed(2)}
    return model, opt, sched, obj, gens


def trained_parts():
    model, opt, sched, obj, gens = parts()
    x, y = torch.randn(8, 1, 40), torch.arange(8) % 10
    loss = obj.loss(model(x), x, y)
    loss.backward()
    opt.step()
    obj.after_step(model)
    sched.step()
    torch.rand(3, generator=gens["order"])
    return model, opt, sched, obj, gens


class RunsCode:
    """A pickle payload that touches a marker file when unpickled (stands in for os.system)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_state_round_trips_and_streams_continue(tmp_path):
    ident = ResumeIdentity(tmp_path / "resume.pt", "fp", "[t]")
    model, opt, sched, obj, gens = trained_parts()
    np.random.seed(3)
    state = ResumeState(epoch=1, step_in_epoch=2, global_step=6, perm=torch.randperm(8),
                        sums={"loss": 1.5}, history=[{"epoch": 1, "val_acc": 0.5}])
    save_resume(ident, state, model, opt, sched, obj, gens)
    expected = {"order": torch.rand(4, generator=gens["order"]), "numpy": np.random.rand(3),
                "beta": obj.sample(5, torch.device("cpu"))}
    m2, o2, s2, b2, g2 = parts(seed=9)
    np.random.seed(99)
    loaded, epoch = try_resume(ident, m2, o2, s2, b2, g2, torch.device("cpu"))
    assert epoch == 1 and loaded.global_step == 6 and loaded.sums == {"loss": 1.5}
    assert torch.equal(loaded.perm, state.perm) and loaded.history == state.history
    assert torch.equal(torch.rand(4, generator=g2["order"]), expected["order"])
    assert np.array_equal(np.random.rand(3), expected["numpy"])
    assert torch.equal(b2.sample(5, torch.device("cpu")), expected["beta"])
    for (k, v), (k2, v2) in zip(model.state_dict().items(), m2.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(v, v2)
    assert s2.state_dict() == sched.state_dict()


def test_same_state_gives_same_bytes(tmp_path):
    """A resume file is a deterministic function of the state (fixed zip timestamps)."""
    for name in ("a.pt", "b.pt"):
        model, opt, sched, obj, gens = parts()
        np.random.seed(0)
        save_resume(ResumeIdentity(tmp_path / name, "fp", "[t]"), ResumeState(), model, opt,
                    sched, obj, gens)
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()


def test_resume_onto_another_device_restores_cpu_streams(tmp_path):
    """Loading with map_location=<device> moved the generator states off the CPU, and
    set_state then raised 'RNG state must be a torch.ByteTensor' on every retry (CUDA);
    ``meta`` reproduces that without a GPU."""
    ident = ResumeIdentity(tmp_path / "resume.pt", "fp", "[t]")
    model, opt, sched, obj, gens = trained_parts()
    save_resume(ident, ResumeState(epoch=1), model, opt, sched, obj, gens)
    m2, o2, s2, b2, g2 = parts()
    state, epoch = try_resume(ident, m2, o2, s2, b2, g2, torch.device("meta"))
    assert epoch == 1
    assert all(g.get_state().device.type == "cpu" for g in g2.values())


def test_planted_pickle_never_runs_and_is_set_aside(tmp_path, caplog):
    """Old behaviour: torch.load(weights_only=False) ran the planted code, then logged
    'starting fresh'."""
    marker = tmp_path / "pwned"
    resume = tmp_path / "resume.pt"
    torch.save({"fingerprint": "fp", "state": RunsCode(str(marker))}, resume)
    model, opt, sched, obj, gens = parts()
    with caplog.at_level(logging.WARNING):
        state, epoch = try_resume(ResumeIdentity(resume, "fp", "[t]"), model, opt, sched, obj,
                                  gens, torch.device("cpu"))
    assert epoch is None and state == ResumeState()
    assert not marker.exists(), "the planted pickle ran"
    assert not resume.exists() and (tmp_path / "resume.pt.rejected").exists()
    assert any(str(resume) in m and "rejected" in m for m in caplog.messages)


def test_header_right_but_state_runs_code_is_refused(tmp_path, caplog):
    """A hand-made file in the new format whose state.pt is a hostile pickle with a
    matching hash: weights_only refuses it before anything runs."""
    marker, resume = tmp_path / "pwned", tmp_path / "resume.pt"
    blob = pickle.dumps({"state": RunsCode(str(marker))})
    import hashlib
    import json

    header = {"format": "selfdistill-resume/2", "fingerprint": "fp",
              "state_sha256": hashlib.sha256(blob).hexdigest()}
    with zipfile.ZipFile(resume, "w") as zf:
        zf.writestr("header.json", json.dumps(header))
        zf.writestr("state.pt", blob)
    model, opt, sched, obj, gens = parts()
    with caplog.at_level(logging.WARNING):
        _, epoch = try_resume(ResumeIdentity(resume, "fp", "[t]"), model, opt, sched, obj, gens,
                              torch.device("cpu"))
    assert epoch is None and not marker.exists()
    assert (tmp_path / "resume.pt.rejected").exists()
    with pytest.raises(ResumeFileError, match="not plain tensor data"):
        read_resume(tmp_path / "resume.pt.rejected")


def test_other_fingerprint_is_not_unpickled(tmp_path, monkeypatch):
    """The fingerprint is read from the header: a file of another run is never loaded."""
    ident = ResumeIdentity(tmp_path / "resume.pt", "fp-old", "[t]")
    model, opt, sched, obj, gens = parts()
    save_resume(ident, ResumeState(epoch=2), model, opt, sched, obj, gens)

    def no_load(*a, **k):
        raise AssertionError("torch.load called for a file of another run")

    monkeypatch.setattr(torch, "load", no_load)
    _, epoch = try_resume(ResumeIdentity(ident.path, "fp-new", "[t]"), model, opt, sched, obj,
                          gens, torch.device("cpu"))
    assert epoch is None


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage", "empty"])
def test_damaged_file_is_named_and_set_aside(tmp_path, caplog, damage):
    ident = ResumeIdentity(tmp_path / "resume.pt", "fp", "[t]")
    model, opt, sched, obj, gens = parts()
    save_resume(ident, ResumeState(epoch=1), model, opt, sched, obj, gens)
    data = ident.path.read_bytes()
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip":  # one byte inside state.pt: the zip stays valid, the hash fails
        i = data.index(b"state.pt") + 200
        data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:]
    elif damage == "garbage":
        data = os.urandom(256)
    else:
        data = b""
    ident.path.write_bytes(data)
    with caplog.at_level(logging.WARNING):
        _, epoch = try_resume(ident, model, opt, sched, obj, gens, torch.device("cpu"))
    assert epoch is None and (tmp_path / "resume.pt.rejected").exists()
    assert any("starting fresh" in m and str(ident.path) in m for m in caplog.messages)

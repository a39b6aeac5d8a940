"""Resume files: the whole state of a training run, so a killed run restarts bit-identically.

A resume file holds the run's fingerprint, its :class:`ResumeState` (epoch, step, index
order, partial-epoch sums, best checkpoint, history), the model, optimiser, scheduler and
objective state, and every random stream (the run's named generators plus torch's, numpy's
and Python's global ones). SIGTERM is turned into a flag that the training loop polls at
step boundaries, so the file it writes on SIGTERM is taken between two optimiser steps.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import signal
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .io import atomic_path
from .objectives import Objective

__all__ = [
    "ResumeIdentity",
    "ResumeState",
    "SigtermFlag",
    "TrainInterrupted",
    "fingerprint",
    "save_resume",
    "try_resume",
]

log = logging.getLogger(__name__)


class TrainInterrupted(SystemExit):
    """Raised after SIGTERM once the resume checkpoint is written (exit status 143)."""

    def __init__(self, message: str) -> None:
        super().__init__(143)
        self.message = message


@dataclass(frozen=True)
class ResumeIdentity:
    """Which run this is: its resume file (None: no resume file), the fingerprint a resume
    file must carry to be reused, and the run's name in log and error messages."""

    path: str | Path | None = None
    fingerprint: str = ""
    describe: str = ""


@dataclass
class ResumeState:
    """Everything needed to continue a run exactly where it stopped."""

    epoch: int = 0  # epochs completed
    step_in_epoch: int = 0  # optimiser steps done in the current (incomplete) epoch
    global_step: int = 0
    perm: Tensor | None = None  # the current epoch's index order
    sums: dict[str, float] = field(default_factory=dict)  # partial-epoch accumulators
    best_val: float = -1.0
    best_epoch: int = -1
    best_state: dict[str, Tensor] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    train_step_seconds: float = 0.0


def fingerprint(payload: Mapping[str, Any]) -> str:
    """sha256 of a JSON payload (config + input hashes) that names a run's identity."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _rng_state(gens: Mapping[str, torch.Generator]) -> dict[str, Any]:
    state: dict[str, Any] = {name: g.get_state() for name, g in gens.items()}
    state["torch"] = torch.get_rng_state()
    state["numpy"] = np.random.get_state()
    state["python"] = random.getstate()
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(gens: Mapping[str, torch.Generator], state: Mapping[str, Any]) -> None:
    for name, g in gens.items():
        g.set_state(state[name])
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class SigtermFlag:
    """Turns SIGTERM into a flag polled at step boundaries (restored on exit)."""

    def __init__(self) -> None:
        self.raised = False
        self._old: Any = None

    def __enter__(self) -> SigtermFlag:
        try:
            self._old = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread: no handler possible
            self._old = None
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.raised = True

    def __exit__(self, *exc: Any) -> None:
        if self._old is not None:
            signal.signal(signal.SIGTERM, self._old)


def save_resume(ident: ResumeIdentity, state: ResumeState, model: nn.Module,
                opt: torch.optim.Optimizer, sched: Any, objective: Objective,
                gens: Mapping[str, torch.Generator]) -> None:
    """Write the resume file atomically (nothing when ``ident.path`` is None)."""
    if ident.path is None:
        return
    payload = {"fingerprint": ident.fingerprint, "state": asdict(state),
               "model": model.state_dict(), "optimizer": opt.state_dict(),
               "scheduler": sched.state_dict(), "objective": objective.state_dict(),
               "rng": _rng_state(gens)}
    with atomic_path(ident.path) as tmp:
        torch.save(payload, tmp)


def try_resume(ident: ResumeIdentity, model: nn.Module, opt: torch.optim.Optimizer, sched: Any,
               objective: Objective, gens: Mapping[str, torch.Generator],
               device: torch.device) -> tuple[ResumeState, int | None]:
    """Load every piece of state from the resume file into the given objects and return the
    run's :class:`ResumeState` and the epoch it resumes from; a fresh state and None when
    there is no file, it is unreadable, or it was written for another fingerprint."""
    path = ident.path
    if path is None or not Path(path).exists():
        return ResumeState(), None
    try:
        payload = torch.load(path, map_location=device, weights_only=False)
    except Exception as err:  # a resume file is a cache: an unreadable one is discarded
        log.warning("%s: resume file %s unreadable (%s); starting fresh", ident.describe, path,
                    err)
        return ResumeState(), None
    if payload.get("fingerprint") != ident.fingerprint:
        log.warning("%s: resume file %s was written for a different config or inputs "
                    "(fingerprint %s, now %s); starting fresh", ident.describe, path,
                    str(payload.get("fingerprint"))[:12], ident.fingerprint[:12])
        return ResumeState(), None
    model.load_state_dict(payload["model"])
    opt.load_state_dict(payload["optimizer"])
    sched.load_state_dict(payload["scheduler"])
    objective.load_state_dict(payload["objective"])
    _set_rng_state(gens, payload["rng"])
    state = ResumeState(**payload["state"])
    log.info("%s: resuming from %s at epoch %d step %d", ident.describe, path, state.epoch,
             state.step_in_epoch)
    return state, state.epoch

"""Resume files: the whole state of a training run, so a killed run restarts bit-identically.

A resume file holds the run's fingerprint, its :class:`ResumeState` (epoch, step, index
order, partial-epoch sums, best checkpoint, history), the model, optimiser, scheduler and
objective state, and every random stream (the run's named generators plus torch's, numpy's
and Python's global ones). SIGTERM is turned into a flag that the training loop polls at
step boundaries, so the file it writes on SIGTERM is taken between two optimiser steps,
and a log line says so before the process exits with status 143.

A resume file is never unpickled before it is trusted (methods §2, docs/reliability.md "What
is trusted"): it is a small zip of ``header.json`` (format, fingerprint, the sha256 of the
state) and ``state.pt`` (``torch.save`` of tensors, numbers, strings and containers only).
:func:`try_resume` reads the header with :mod:`zipfile` and :mod:`json`, checks the
fingerprint and the hash, and only then loads the state with ``weights_only=True`` onto the
CPU. Every random stream is stored as tensors and plain numbers (numpy's state too), and the
state is read onto the CPU whatever the training device: ``Generator.set_state`` takes CPU
byte tensors only, and ``load_state_dict`` moves each tensor to its parameter's device. A file
that fails any check is named in the log and set aside as ``resume.pt.rejected``; the run
starts fresh.

Finished networks (``model.pt``) are checked before they are trusted: :func:`verify_model`
compares the file's sha256 with the ``model_sha256`` recorded in the ``run.json`` beside it
and checks that it is a readable dict of the expected keys whose weights are finite and
load into the network it names; anything else is a :class:`CheckpointError` naming the file,
what is wrong and the fix.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import random
import signal
import zipfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .io import read_json, write_bytes
from .models import build_model
from .objectives import Objective

__all__ = [
    "MODEL_KEYS",
    "RESUME_FORMAT",
    "CheckpointError",
    "ResumeFileError",
    "ResumeIdentity",
    "ResumeState",
    "SigtermFlag",
    "TrainInterrupted",
    "fingerprint",
    "interrupted",
    "load_model",
    "read_resume",
    "recorded_sha256",
    "save_resume",
    "try_resume",
    "verify_model",
]

MODEL_KEYS = ("state_dict", "arch", "num_classes", "input_shape")  # what model.pt must hold
_RESUME_FILE = ("is a resume file (the state of an unfinished run), not the model.pt of a "
                "finished one")

log = logging.getLogger(__name__)


class TrainInterrupted(SystemExit):
    """Raised after SIGTERM once the resume checkpoint is written (exit status 143)."""

    def __init__(self, message: str) -> None:
        super().__init__(143)
        self.message = message


def interrupted(path: str | Path | None, describe: str, epoch: int,
                step: int) -> TrainInterrupted:
    """Log that SIGTERM stopped the run in ``epoch`` (1-based) after ``step`` optimiser steps
    of it, with the resume file written at ``path``, and return the exit (status 143)."""
    saved = f"{Path(path).name} written" if path is not None else "no resume file (none set)"
    message = f"SIGTERM at epoch {epoch} step {step}: {saved}, exiting 143"
    log.warning("%s: %s", describe, message)
    return TrainInterrupted(f"{describe}: {message}")


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
    """Every random stream as tensors and plain numbers (loadable with weights_only)."""
    state: dict[str, Any] = {name: g.get_state() for name, g in gens.items()}
    state["torch"] = torch.get_rng_state()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state["numpy"] = {"kind": str(kind), "keys": torch.from_numpy(keys.astype(np.int64)),
                      "pos": int(pos), "has_gauss": int(has_gauss), "cached": float(cached)}
    state["python"] = random.getstate()  # (version, tuple of ints, None)
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(gens: Mapping[str, torch.Generator], state: Mapping[str, Any]) -> None:
    """Restore :func:`_rng_state`'s streams; generator states go back as CPU byte tensors."""
    for name, g in gens.items():
        g.set_state(state[name].cpu())
    torch.set_rng_state(state["torch"].cpu())
    npy = state["numpy"]
    np.random.set_state((npy["kind"], npy["keys"].cpu().numpy().astype(np.uint32), npy["pos"],
                         npy["has_gauss"], npy["cached"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


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


RESUME_FORMAT = "selfdistill-resume/2"  # header.json's "format"
_HEADER, _STATE = "header.json", "state.pt"  # the two members of a resume file


class ResumeFileError(ValueError):
    """A resume file that is not trusted (why: the message); it is never unpickled."""


def save_resume(ident: ResumeIdentity, state: ResumeState, model: nn.Module,
                opt: torch.optim.Optimizer, sched: Any, objective: Objective,
                gens: Mapping[str, torch.Generator]) -> None:
    """Write the resume file atomically (nothing when ``ident.path`` is None)."""
    if ident.path is None:
        return
    payload = {"state": asdict(state), "model": model.state_dict(),
               "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
               "objective": objective.state_dict(), "rng": _rng_state(gens)}
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    blob = buffer.getvalue()
    header = {"format": RESUME_FORMAT, "fingerprint": ident.fingerprint,
              "state_sha256": hashlib.sha256(blob).hexdigest(), "state_bytes": len(blob)}
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        for name, data in ((_HEADER, json.dumps(header, sort_keys=True).encode()),
                           (_STATE, blob)):  # fixed timestamps: equal states, equal bytes
            zf.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data)
    write_bytes(ident.path, archive.getvalue())  # a failed write names the file and its errno


def _resume_header(path: Path) -> tuple[dict[str, Any], zipfile.ZipFile]:
    """The header of the resume file at ``path`` and the open archive, read without any
    unpickling; :class:`ResumeFileError` when it is not a resume file of this format."""
    try:
        zf = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as err:
        raise ResumeFileError(f"is not a resume file of this version ({err})") from err
    try:
        names = zf.namelist()
        if names != [_HEADER, _STATE]:
            raise ResumeFileError(f"holds the members {names[:4]}, not [{_HEADER}, {_STATE}]")
        if zf.getinfo(_HEADER).file_size > 65536:
            raise ResumeFileError(f"has a {_HEADER} of {zf.getinfo(_HEADER).file_size} bytes")
        header = json.loads(zf.read(_HEADER))
        if not isinstance(header, dict) or header.get("format") != RESUME_FORMAT:
            raise ResumeFileError(f"has no {RESUME_FORMAT!r} header")
        return header, zf
    except ResumeFileError:
        zf.close()
        raise
    except (OSError, ValueError, zipfile.BadZipFile, KeyError) as err:
        zf.close()
        raise ResumeFileError(f"has an unreadable {_HEADER} ({err})") from err


def _resume_payload(header: Mapping[str, Any], zf: zipfile.ZipFile) -> dict[str, Any]:
    """The state of an open resume file once its bytes match the header's sha256, loaded
    with ``weights_only=True`` onto the CPU."""
    try:
        blob = zf.read(_STATE)
    except (OSError, zipfile.BadZipFile) as err:
        raise ResumeFileError(f"has an unreadable {_STATE} ({err})") from err
    if hashlib.sha256(blob).hexdigest() != header.get("state_sha256"):
        raise ResumeFileError(f"has a {_STATE} whose sha256 differs from its header's "
                              f"(truncated or altered)")
    try:
        payload = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    except Exception as err:  # weights_only refuses anything but tensors and plain data
        first = " ".join(str(err).split())[:200]
        raise ResumeFileError(f"holds a {_STATE} that is not plain tensor data ({first})") \
            from err
    if not isinstance(payload, dict):
        raise ResumeFileError(f"holds a {type(payload).__name__}, not a dict")
    return payload


def read_resume(path: str | Path) -> dict[str, Any]:
    """The checked header and state of a resume file: ``{"fingerprint": ..., **state}``
    (``state``, ``model``, ``optimizer``, ...); :class:`ResumeFileError` when untrusted."""
    header, zf = _resume_header(Path(path))
    with zf:
        payload = _resume_payload(header, zf)
    return {"fingerprint": header.get("fingerprint"), **payload}


def _set_aside(path: Path, describe: str, why: str) -> None:
    """Log that the resume file at ``path`` is not used and why; move it to
    ``<name>.rejected`` (replacing an older one) so nothing reads it again."""
    aside = path.with_name(path.name + ".rejected")
    try:
        os.replace(path, aside)
        where = f"moved to {aside}"
    except OSError as err:
        where = f"could not be moved aside ({err.strerror or err})"
    log.warning("%s: resume file %s %s: not used, %s; starting fresh", describe, path, why,
                where)


def try_resume(ident: ResumeIdentity, model: nn.Module, opt: torch.optim.Optimizer, sched: Any,
               objective: Objective, gens: Mapping[str, torch.Generator],
               device: torch.device) -> tuple[ResumeState, int | None]:
    """Load every piece of state from the resume file into the given objects and return the
    run's :class:`ResumeState` and the epoch it resumes from; a fresh state and None when
    there is no file, it is not trusted (set aside, see the module docstring), or it was
    written for another fingerprint. The state is read onto the CPU whatever ``device``
    is; each object's ``load_state_dict`` moves its tensors to its parameters' device."""
    path = ident.path
    if path is None or not Path(path).exists():
        return ResumeState(), None
    path = Path(path)
    try:
        header, zf = _resume_header(path)
    except ResumeFileError as err:
        _set_aside(path, ident.describe, str(err))
        return ResumeState(), None
    with zf:
        if header.get("fingerprint") != ident.fingerprint:
            log.warning("%s: resume file %s was written for a different config or inputs "
                        "(fingerprint %s, now %s); starting fresh", ident.describe, path,
                        str(header.get("fingerprint"))[:12], ident.fingerprint[:12])
            return ResumeState(), None
        try:
            payload = _resume_payload(header, zf)
        except ResumeFileError as err:
            _set_aside(path, ident.describe, str(err))
            return ResumeState(), None
    model.load_state_dict(payload["model"])
    opt.load_state_dict(payload["optimizer"])
    sched.load_state_dict(payload["scheduler"])
    objective.load_state_dict(payload["objective"])
    _set_rng_state(gens, payload["rng"])
    state = ResumeState(**payload["state"])
    log.info("%s: resuming from %s at epoch %d step %d", ident.describe, path, state.epoch + 1,
             state.step_in_epoch)  # epoch: the one in progress, 1-based (as SIGTERM's line)
    return state, state.epoch


# --------------------------------------------------------------------------- model.pt


class CheckpointError(RuntimeError):
    """A ``model.pt`` that cannot be trusted; ``problem`` says what is wrong, ``fix`` what to
    do (it depends on who asked: the caller passes it)."""

    role = "model checkpoint"

    def __init__(self, path: str | Path, problem: str, fix: str = "") -> None:
        self.path, self.problem, self.fix = str(path), problem, fix
        super().__init__(f"{self.role} {path} {problem}" + (f". {fix}" if fix else ""))

    def __reduce__(self) -> tuple[Any, ...]:  # picklable despite the three-part constructor
        return type(self), (self.path, self.problem, self.fix)


def recorded_sha256(path: str | Path) -> str | None:
    """The ``model_sha256`` that the ``run.json`` beside ``path`` recorded when ``path`` was
    written; None when ``path`` is not named ``model.pt`` (the record is that file's), there
    is no ``run.json``, or it predates the record."""
    record_path = Path(path).parent / "run.json"
    if Path(path).name != "model.pt" or not record_path.is_file():
        return None
    try:
        record = read_json(record_path)
    except (OSError, ValueError) as err:
        raise CheckpointError(path, f"cannot be checked: the run.json beside it is unreadable "
                                    f"({err})") from err
    return record.get("model_sha256") if isinstance(record, dict) else None


def verify_model(path: str | Path, expected_sha256: str | None) -> dict[str, Any]:
    """The checkpoint dict of ``model.pt`` at ``path`` once it passes every check of
    :func:`load_model` (``expected_sha256``: see there)."""
    return load_model(path, expected_sha256)[0]


def load_model(path: str | Path, expected_sha256: str | None) -> tuple[dict[str, Any],
                                                                       nn.Module]:
    """Read and check ``model.pt``; return its dict and the network it holds (on the CPU).

    Checks, each a :class:`CheckpointError` naming the file: readable (not missing, not a
    directory), sha256 equal to ``expected_sha256`` (None: not checked; see
    :func:`recorded_sha256`), a dict with :data:`MODEL_KEYS`, a ``state_dict`` that loads
    strictly into the network its ``arch``/``num_classes``/``input_shape`` name, finite
    weights. Global random streams are left as they were.
    """
    p = Path(path)
    data = _read_bytes(p)
    if expected_sha256 is not None:
        actual = hashlib.sha256(data).hexdigest()
        if actual != expected_sha256:
            raise CheckpointError(p, f"has sha256 {actual[:16]}… but {expected_sha256[:16]}… "
                                     f"was recorded (run.json) when it was written: its bytes "
                                     f"changed since (corrupted or replaced)")
    try:
        ckpt = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:  # any unpickling failure: say what the file is instead
        raise CheckpointError(p, _not_torch(p, data, err)) from err
    _check_keys(p, ckpt)
    net = _network(p, ckpt)
    bad = [k for k, v in ckpt["state_dict"].items()
           if torch.is_tensor(v) and v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        names = ", ".join(bad[:3]) + (", …" if len(bad) > 3 else "")
        raise CheckpointError(p, f"holds non-finite weights (NaN or inf in {len(bad)} "
                                 f"tensor(s): {names}): the run that wrote it diverged or the "
                                 f"file was altered")
    return ckpt, net


def _read_bytes(p: Path) -> bytes:
    if p.is_dir():
        inner = p / "model.pt"
        hint = f" (it holds one: {inner})" if inner.is_file() else ""
        raise CheckpointError(p, f"is a directory, not a model.pt{hint}")
    if not p.exists():
        raise CheckpointError(p, "is missing (no such file)")
    try:
        return p.read_bytes()
    except OSError as err:
        raise CheckpointError(p, f"cannot be read ({err.strerror or err})") from err


def _not_torch(p: Path, data: bytes, err: Exception) -> str:
    """What a file that torch.load rejects is, for the message."""
    if p.name == "resume.pt":  # its random-stream state is no plain tensor data
        return _RESUME_FILE
    if zipfile.is_zipfile(io.BytesIO(data)):
        names = zipfile.ZipFile(io.BytesIO(data)).namelist()
        if names == [_HEADER, _STATE]:
            return _RESUME_FILE
        if names and all(n.endswith(".npy") for n in names):
            return (f"is a NumPy archive of arrays {[n[:-4] for n in names][:4]} (a preds.npz "
                    f"holds predictions, not network weights)")
    if data[:1] in (b"{", b"["):
        return "is a JSON file (run.json or manifest.json?), not network weights"
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return f"is not a readable torch checkpoint (torch.load: {first[:200]})"


def _check_keys(p: Path, ckpt: Any) -> None:
    if not isinstance(ckpt, dict):
        raise CheckpointError(p, f"holds a {type(ckpt).__name__}, not the dict of weights and "
                                 f"architecture that `selfdistill train` writes")
    missing = [k for k in MODEL_KEYS if k not in ckpt]
    if missing and {"state", "model", "optimizer"} <= set(ckpt):
        raise CheckpointError(p, _RESUME_FILE)
    if missing:
        raise CheckpointError(p, f"lacks the key(s) {missing} (it holds {sorted(ckpt)[:8]}): "
                                 f"it was not written by `selfdistill train`")
    if not isinstance(ckpt["state_dict"], dict):
        raise CheckpointError(p, f"has a state_dict of type {type(ckpt['state_dict']).__name__},"
                                 f" not a dict of tensors")


def _network(p: Path, ckpt: Mapping[str, Any]) -> nn.Module:
    """The network ``ckpt`` names, its weights loaded strictly (global RNG untouched)."""
    arch, k, shape = ckpt["arch"], ckpt["num_classes"], ckpt["input_shape"]
    try:
        with torch.random.fork_rng(devices=[]):
            net = build_model(arch, int(k), tuple(int(d) for d in shape))
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise CheckpointError(p, f"names a network that cannot be built (arch {arch!r}, "
                                 f"num_classes {k!r}, input_shape {shape!r}: {err})") from err
    try:
        net.load_state_dict(ckpt["state_dict"])
    except RuntimeError as err:
        detail = " ".join(str(err).split())[:300]
        raise CheckpointError(p, f"does not load into the {arch} network for {k} classes and "
                                 f"input {tuple(shape)} it names ({detail})") from err
    return net

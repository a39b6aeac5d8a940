"""One trained network, end to end: data in, checkpoint + history + predictions out.

This is the single code path behind the Snakemake training rules and the
``python -m selfdistill train`` CLI. Outputs of a run directory:

- ``model.pt``: best-validation weights plus what is needed to rebuild the network;
- ``history.csv``: one row per epoch (epoch, lr, train loss/accuracy, val accuracy, time),
  rewritten after every epoch (:class:`EpochReport`);
- ``preds.npz``: ``{split}_logits`` (the best-validation weights), ``{split}_logits_last``
  (the last epoch's weights) and ``{split}_targets`` for the un-augmented train, val and
  test splits (methods §4: every metric is recomputed from the logits);
- ``run.json``: provenance (resolved config, seed, git, versions, device, wall time, inputs).

``resume.pt`` (not an output) holds the in-progress state and is deleted on success;
``progress.json`` (not an output) the latest epoch, for ``python -m selfdistill progress``.
``tensorboard/`` (not an output, only with ``execution.tensorboard``): TensorBoard event
files of the curves, written after each epoch (:mod:`selfdistill.tensorboard_log`).
:func:`train_bundle` also keeps each finished network's outputs as hard links
``.finished-<name>`` beside them, so a network survives Snakemake deleting the outputs of a
bundle job it runs again (see there).
``run.json`` records ``model_sha256``, the hash of ``model.pt`` as written: a teacher is
loaded only if its bytes still match it (:func:`selfdistill.checkpoint.verify_model`).
"""

from __future__ import annotations

import copy
import logging
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .augment import InputPipeline, build_input_pipeline
from .checkpoint import CheckpointError, ResumeIdentity, load_model, recorded_sha256, verify_model
from .data import SPLITS, load_manifest, load_split
from .devices import DeviceLease, acquire_device
from .grid import csv_param, path_param
from .io import (
    atomic_path,
    ensure_writable_dir,
    read_json,
    sha256_file,
    write_csv,
    write_json,
    write_npz,
    write_torch,
)
from .methods import get_method
from .models import build_model
from .objectives import Objective
from .progress import epoch_line, write_progress
from .provenance import provenance
from .tensorboard_log import CurveLog, summary_writer
from .train import (
    NonFiniteLossError,
    TrainConfig,
    derive_seed,
    fingerprint,
    fit,
    predict_logits,
)

__all__ = ["CALLERS", "OUTPUT_FILES", "EpochReport", "RunSpec", "TeacherError", "load_teacher",
           "run_identity", "spec_from_params", "train_bundle", "train_run", "write_history"]

log = logging.getLogger(__name__)
OUTPUT_FILES = ("model.pt", "history.csv", "preds.npz", "run.json")
CALLERS = ("workflow", "cli")  # who started a run: decides the advice of its errors


class TeacherError(CheckpointError):
    """The SD teacher checkpoint is missing, damaged, or does not match the student."""

    role = "teacher checkpoint"


@dataclass(frozen=True)
class RunSpec:
    """Identity and inputs of one trained network.

    ``param`` is the swept strength of the method (None for ce and sd); ``options`` are the
    method's keyword options (its config block ``methods.<method>``, methods §3), defaults of
    the registry :mod:`selfdistill.methods` filling what is not given.
    """

    dataset_dir: str
    arch: str
    method: str
    param: float | None
    seed: int
    gen: int
    out_dir: str
    train: TrainConfig
    options: Mapping[str, Any] = field(default_factory=dict)
    teacher: str | None = None
    device: str = "auto"
    threads: int = 1
    gpus: int = 0  # resources.gpu of the job: scheduling, not identity (see acquire_device)
    tensorboard: bool = False  # execution.tensorboard: event files only, not identity
    dataset: str = ""
    config: Mapping[str, Any] = field(default_factory=dict)  # resolved config, provenance only

    def describe(self) -> str:
        p = "" if self.param is None else f" param={self.param}"
        return (f"[{self.dataset or Path(self.dataset_dir).name}/{self.arch} method={self.method}"
                f"{p} seed={self.seed} gen={self.gen}]")

    def validate(self) -> None:
        m = get_method(self.method)
        if m.swept is not None and self.param is None:
            raise ValueError(f"{self.describe()}: method {m.name} needs a param, its "
                             f"strength {m.swept} ({m.symbol}, methods §{m.section})")
        m.resolve(self.options)  # unknown option keys raise here, before any training
        if self.method == "sd" and (self.gen < 1 or not self.teacher):
            raise ValueError(f"{self.describe()}: sd needs gen >= 1 and a teacher checkpoint "
                             f"(generation 0 is the ce run, methods §3.4)")
        if m.teacher is not None and not self.teacher:
            raise ValueError(f"{self.describe()}: {m.name} needs a teacher checkpoint, the "
                             f"seed's {m.teacher} network (methods §{m.section})")
        if self.method != "sd" and self.gen != 0:
            raise ValueError(f"{self.describe()}: gen must be 0 for method {self.method}")


def load_teacher(path: str | Path, arch: str, num_classes: int, input_shape: tuple[int, ...],
                 device: torch.device, caller: str = "workflow") -> torch.nn.Module:
    """Rebuild the teacher from ``model.pt`` once it is verified (sha256 against the
    ``run.json`` beside it, keys, shapes, finite weights) and matches the student (methods §3.4).

    ``caller`` (one of :data:`CALLERS`) picks the advice of a :class:`TeacherError`: the
    workflow retrains the teacher's run, the CLI's ``--teacher`` points elsewhere.
    """
    if caller not in CALLERS:
        raise ValueError(f"caller must be one of {CALLERS}, got {caller!r}")
    p = Path(path)
    try:
        ckpt, teacher = load_model(p, recorded_sha256(p))
    except CheckpointError as err:
        raise TeacherError(p, err.problem, _teacher_fix(p, caller, not p.exists())) from err
    got = (ckpt["arch"], ckpt["num_classes"], tuple(ckpt["input_shape"]))
    want = (arch, num_classes, tuple(input_shape))
    if got != want:
        raise TeacherError(p, f"is incompatible: it holds arch/classes/input {got}, the student "
                              f"needs {want}; SD teaches a network of the same architecture on "
                              f"the same dataset", _teacher_fix(p, caller, False))
    return teacher.to(device).eval()


def _teacher_fix(p: Path, caller: str, missing: bool) -> str:
    """What to do about the teacher checkpoint ``p``, for whoever started the run."""
    if caller == "cli":
        return ("--teacher must be the model.pt of a finished `selfdistill train` run of the "
                "same --arch on the same --data (e.g. runs/ce0/model.pt)")
    if missing:
        return f"Train the previous generation first: snakemake {p}"
    return (f"Delete {p.parent} and re-run snakemake (snakemake {p} retrains that previous "
            f"generation, this run's teacher)")


def _ema_model(spec: RunSpec, k: int, shape: tuple[int, ...],
               device: torch.device) -> torch.nn.Module:
    """BS ranking network: same architecture, its own random init (methods §3.5)."""
    torch.manual_seed(derive_seed(spec.seed, spec.gen, "ema-init"))
    return build_model(spec.arch, k, shape).to(device)


def _objective(spec: RunSpec, meta: Mapping[str, Any], device: torch.device,
               caller: str = "workflow") -> Objective:
    """The run's objective, built by the registry from the run state its constructor
    requires: the SD or Tf-KD_self teacher (methods §3.4, §3.7), the BS EMA network and Beta
    sampler (methods §3.5), CS-KD's partner sampler (§3.9) and the number of classes."""
    shape, k = tuple(meta["input_shape"]), int(meta["num_classes"])
    providers = {
        "teacher": lambda: load_teacher(spec.teacher, spec.arch, k, shape, device, caller),
        "ema_model": lambda: _ema_model(spec, k, shape, device),
        "generator": lambda: torch.Generator().manual_seed(derive_seed(spec.seed, "beta")),
        "partner_generator": lambda: torch.Generator().manual_seed(
            derive_seed(spec.seed, "partner")),  # CS-KD's partners (methods §3.9)
        "num_classes": lambda: k,
    }
    method = get_method(spec.method)
    missing = [name for name in method.requires() if name not in providers]
    if missing:
        raise TypeError(f"objective {method.objective_name} requires {missing}, which "
                        f"run._objective cannot provide (known: {sorted(providers)})")
    state = {name: providers[name]() for name in method.requires()}
    return method.build(spec.param, spec.options, **state)


def build_pipeline(meta: Mapping[str, Any], cfg: TrainConfig) -> InputPipeline:
    """Stored inputs → network inputs: scaling, methods §2 augmentation, normalisation.

    Augmentation runs in pixel space before normalisation, so crop padding is pixel 0
    (methods §2: zero padding before normalisation).
    """
    return build_input_pipeline(cfg.augment, cfg.augment_padding, meta.get("normalize"),
                                meta.get("input_size"))


# Not part of a network's identity: where it is written, the config kept for provenance,
# the GPUs reserved, whether event files are written (they only read the history rows),
# and when resume files are written (scheduling: the same epochs give the same bits).
_NOT_IDENTITY = ("config", "out_dir", "gpus", "tensorboard")
_NOT_IDENTITY_TRAIN = ("checkpoint_every",)


def run_fingerprint(spec: RunSpec, manifest: Mapping[str, Any]) -> str:
    """sha256 of what the network's numbers depend on: the spec (recipe, method and its own
    options, seed, device, kernel switches, ``threads``: CPU kernels split their sums by
    thread count, so another count changes the bits), the data files' sha256 and the
    teacher's (methods §3.4). A resume file or kept outputs are reused only under the same one."""
    ident = {k: v for k, v in asdict(spec).items() if k not in _NOT_IDENTITY}
    ident["train"] = {k: v for k, v in ident["train"].items() if k not in _NOT_IDENTITY_TRAIN}
    payload = {"spec": ident, "data": manifest["sha256"],
               "teacher": sha256_file(spec.teacher) if spec.teacher else None}
    return fingerprint(payload)


def spec_from_params(params: Mapping[str, Any], checkpoint_every: int = 1,
                     config: Mapping[str, Any] | None = None, gpus: int = 0,
                     tensorboard: bool = False) -> RunSpec:
    """Build a :class:`RunSpec` from the plain dict of :func:`selfdistill.grid.run_params`,
    with the resume-file cadence (the rule's ``resources.checkpoint_every``), the config
    kept for provenance only (``snakemake.config``), the GPUs the job reserved (the
    rule's ``resources.gpu``) and whether TensorBoard event files are written
    (``execution.tensorboard``): none of them is part of the identity."""
    p = dict(params)
    train = dict(p.pop("train"))
    train["milestones"] = tuple(train["milestones"])
    train["checkpoint_every"] = int(checkpoint_every)
    options = get_method(p["method"]).resolve(p.pop("options"))
    return RunSpec(train=TrainConfig(**train), options=options, config=dict(config or {}),
                   gpus=int(gpus), tensorboard=bool(tensorboard), **p)


KEPT_PREFIX = ".finished-"  # train_bundle's hard links to a finished network's outputs


def train_bundle(specs: list[RunSpec]) -> list[dict[str, Any]]:
    """Train several runs in one process, in the given (DAG) order, never losing one that
    is finished.

    Snakemake deletes a job's outputs before it runs the job again (after a failure, a
    kill, or a changed param of one of its runs), so each network's outputs are also kept
    as hard links ``.finished-<name>`` beside them once it is done. A network whose kept
    ``run.json`` carries the current :func:`run_fingerprint` and whose kept ``model.pt``
    matches that record's ``model_sha256`` (:func:`selfdistill.checkpoint.verify_model`) is
    put back without training; the others are trained, resuming where a resume file fits.
    One device lease (:func:`selfdistill.devices.acquire_device`, from the first spec's
    ``device`` and ``gpus``) serves every network, taken before any data is loaded and
    released at the end.
    """
    if not specs:
        return []
    _check_tensorboard(specs)  # before any device, data or training
    with acquire_device(specs[0].device, want_gpu=specs[0].gpus > 0) as lease:
        return _train_networks(specs, lease)


def _train_networks(specs: list[RunSpec], lease: DeviceLease) -> list[dict[str, Any]]:
    """:func:`train_bundle`'s loop on the bundle's device."""
    records = []
    for i, spec in enumerate(specs, 1):
        where = f"{spec.describe()} network {i} of {len(specs)}"
        record = _restore_finished(spec)
        if record is not None:
            log.info("%s: finished earlier with this fingerprint, model.pt verified: kept, "
                     "not trained", where)
        else:
            log.info("%s: training", where)
            record = train_run(spec, keep_resume=True, lease=lease,  # resume.pt: until
                               network=(i, len(specs)))  # its outputs are kept
            _keep_finished(spec)
            (Path(spec.out_dir) / "resume.pt").unlink(missing_ok=True)
        records.append(record)
    return records


def _check_tensorboard(specs: Sequence[RunSpec]) -> None:
    """:class:`~selfdistill.tensorboard_log.TensorBoardMissingError` when a run asks for
    event files (``execution.tensorboard``) and the optional package is absent."""
    if any(spec.tensorboard for spec in specs):
        summary_writer()


def _kept(spec: RunSpec) -> dict[str, Path]:
    return {name: Path(spec.out_dir) / f"{KEPT_PREFIX}{name}" for name in OUTPUT_FILES}


def _keep_finished(spec: RunSpec) -> None:
    """Hard-link the run's outputs to their kept names, ``run.json`` last (it marks them whole)."""
    for name, kept in _kept(spec).items():
        _link(Path(spec.out_dir) / name, kept)


def _restore_finished(spec: RunSpec) -> dict[str, Any] | None:
    """Put a finished network's kept outputs back in place and return its record; None (and
    nothing changed) when they are missing, from another fingerprint or fail verification."""
    kept = _kept(spec)
    if not all(p.is_file() for p in kept.values()):
        return None
    try:
        record = read_json(kept["run.json"])
        if not (spec.teacher is None or Path(spec.teacher).is_file()):
            return None  # train_run names the missing teacher
        if record.get("fingerprint") != run_fingerprint(spec, load_manifest(spec.dataset_dir)):
            log.info("%s: kept outputs are of another config or inputs: training again",
                     spec.describe())
            return None
        verify_model(kept["model.pt"], record["model_sha256"])
        with np.load(kept["preds.npz"]) as npz:  # no pickle: plain arrays only
            if not all(f"{s}_logits_last" in npz.files for s in SPLITS):
                log.info("%s: kept predictions predate last-epoch logits: training again",
                         spec.describe())
                return None
    except (OSError, ValueError, KeyError, CheckpointError) as err:
        log.warning("%s: kept outputs unusable (%s): training again", spec.describe(), err)
        return None
    for name, path in kept.items():  # run.json last
        _link(path, Path(spec.out_dir) / name)
    return record


def _link(src: Path, dst: Path) -> None:
    """Make ``dst`` the file ``src`` (a hard link; a copy where the file system has none),
    replacing ``dst`` atomically through :func:`selfdistill.io.atomic_path` (its temporary
    name marks it as this process's, for the orphan cleanup)."""
    if dst.exists() and os.path.samefile(src, dst):
        return  # already that file (a rename onto its own link would leave tmp behind)
    with atomic_path(dst) as tmp:
        tmp.unlink()
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copy2(src, tmp)


def _nan_causes(spec: RunSpec, lr: float) -> str:
    """Likely causes of a non-finite loss in this run: its method's settings outside their
    usual ranges and the method's own note (the registry, methods §3), then the learning rate."""
    causes = get_method(spec.method).nan_causes(spec.param, spec.options)
    causes.append(f"train.lr = {lr:g} too high for this network (lower it)")
    return "; ".join(causes) + "; or non-finite inputs"


def run_identity(spec: RunSpec) -> str:
    """``dataset/arch/method/param/seed{s}/gen{g}``: the run's place in a results tree
    (:data:`selfdistill.grid.RUN_PATTERN`), its name on progress lines."""
    dataset = spec.dataset or Path(spec.dataset_dir).name
    return (f"{dataset}/{spec.arch}/{spec.method}/{path_param(spec.param)}/seed{spec.seed}/"
            f"gen{spec.gen}")


def write_history(spec: RunSpec, rows: Sequence[Mapping[str, Any]]) -> None:
    """``history.csv`` of the run, replaced atomically: its identity columns, then one row
    per finished epoch (methods §2 recipe: epoch, lr, train loss/accuracy, val accuracy, time)."""
    fields = {"dataset": spec.dataset, "arch": spec.arch, "method": spec.method,
              "param": csv_param(spec.param), "seed": spec.seed,
              "gen": spec.gen}
    write_csv(Path(spec.out_dir) / "history.csv", [{**fields, **row} for row in rows])


class EpochReport:
    """What a run reports while it trains, after every epoch: ``history.csv`` with the rows
    so far, ``progress.json`` (:func:`selfdistill.progress.write_progress`, read by
    ``python -m selfdistill progress``), the curves' TensorBoard events when ``curves`` is
    given (:class:`selfdistill.tensorboard_log.CurveLog`, after the history row) and one
    line (:func:`selfdistill.progress.epoch_line`) in the job's log, or on stdout
    (``print_lines``: the CLI). :meth:`start` writes the files once before the first epoch,
    with the epochs a resumed run has already done."""

    def __init__(self, spec: RunSpec, network: tuple[int, int] | None,
                 print_lines: bool = False, curves: CurveLog | None = None) -> None:
        self.spec, self.network, self.print_lines = spec, network, print_lines
        self.curves = curves
        self.rows: list[dict[str, Any]] = []

    def seconds_per_epoch(self) -> float | None:
        """Mean wall time of the epochs done so far (None before the first)."""
        times = [float(row["time_s"]) for row in self.rows]
        return sum(times) / len(times) if times else None

    def start(self, done: list[dict[str, Any]]) -> None:
        self.rows = list(done)
        if self.rows:
            write_history(self.spec, self.rows)
        write_progress(self.spec.out_dir, self.rows[-1] if self.rows else {"epoch": 0},
                       self.spec.train.epochs, self.network, self.seconds_per_epoch())
        if self.curves is not None:
            self.curves.start(self.rows)

    def epoch(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        write_history(self.spec, self.rows)
        if self.curves is not None:
            self.curves.epoch(row)
        seconds = self.seconds_per_epoch()
        write_progress(self.spec.out_dir, row, self.spec.train.epochs, self.network, seconds)
        line = epoch_line(row, self.spec.train.epochs, self.network, seconds or 0.0,
                          run_identity(self.spec))
        if self.print_lines:
            print(line, flush=True)
        else:
            log.info("%s", line)


def train_run(spec: RunSpec, keep_resume: bool = False, caller: str = "workflow",
              lease: DeviceLease | None = None,
              network: tuple[int, int] | None = None) -> dict[str, Any]:
    """Train one network per ``spec`` and write its outputs; returns the provenance record.

    ``caller`` (:data:`CALLERS`): who started the run, for the advice of its errors and
    where its epoch lines go (:class:`EpochReport`; the CLI passes ``"cli"``). ``lease``:
    the device this process holds (:func:`train_bundle` passes one for all its networks);
    None: the run takes its own (``execution.device``, ``resources.gpu``) before any data is
    loaded, a named :class:`~selfdistill.devices.CudaUnavailableError` when CUDA is asked
    for but absent, and releases it at the end. ``network`` (k, n): the run's place in a
    bundle, for its progress lines. With ``spec.tensorboard`` the run also writes event
    files (:mod:`selfdistill.tensorboard_log`); the package's absence fails before the
    device is taken."""
    _check_tensorboard([spec])
    if lease is None:
        with acquire_device(spec.device, want_gpu=spec.gpus > 0) as own:
            return train_run(spec, keep_resume, caller, own, network)
    t_start = time.perf_counter()
    spec.validate()
    out = ensure_writable_dir(spec.out_dir)
    torch.set_num_threads(spec.threads)
    device = lease.device
    manifest = load_manifest(spec.dataset_dir)
    train, val, test = (load_split(spec.dataset_dir, s) for s in SPLITS)
    shape, k = tuple(manifest["input_shape"]), int(manifest["num_classes"])
    objective = _objective(spec, manifest, device, caller)  # teacher errors before training
    torch.manual_seed(derive_seed(spec.seed, spec.gen, "init"))
    model = build_model(spec.arch, k, shape)
    fp = run_fingerprint(spec, manifest)
    pipeline = build_pipeline(manifest, spec.train)
    curves = CurveLog(out, run_identity(spec), fp) if spec.tensorboard else None
    report = EpochReport(spec, network, print_lines=caller == "cli", curves=curves)
    try:
        result = fit(model, objective, train, val, spec.train, device,
                     resume=ResumeIdentity(out / "resume.pt", fp, spec.describe()),
                     pipeline=pipeline, on_start=report.start, on_epoch=report.epoch)
    except NonFiniteLossError as err:  # the loop knows the lr; the registry, the method
        raise err.with_causes(_nan_causes(spec, err.lr)).with_traceback(
            err.__traceback__) from None
    finally:
        if curves is not None:
            curves.close()
    t_eval = time.perf_counter()
    last = copy.deepcopy(result.model)  # the last epoch's network, beside the best one
    assert result.last_state is not None
    last.load_state_dict(result.last_state)
    arrays: dict[str, Any] = {}
    for split in (train, val, test):
        x = torch.as_tensor(split.x, device=device)
        for suffix, net in (("", result.model), ("_last", last)):
            logits = predict_logits(net, x, spec.train.eval_batch_size,
                                    spec.train.channels_last, pipeline.eval)
            arrays[f"{split.name}_logits{suffix}"] = logits.numpy()
        arrays[f"{split.name}_targets"] = split.y
    del last
    write_npz(out / "preds.npz", **arrays)
    write_history(spec, result.history)
    ckpt = {"state_dict": result.model.state_dict(), "arch": spec.arch, "num_classes": k,
            "input_shape": list(shape), "best_epoch": result.best_epoch,
            "best_val_accuracy": result.best_val_accuracy, "fingerprint": fp,
            "method": spec.method, "param": spec.param, "seed": spec.seed, "gen": spec.gen}
    write_torch(out / "model.pt", ckpt)  # first model.pt, then its hash into run.json
    record = provenance(
        config=dict(spec.config), device=result.device, device_record=lease.record(),
        inputs=[Path(spec.dataset_dir) / f for f in manifest["sha256"]] +
        ([spec.teacher] if spec.teacher else []),
        wall_time_s=time.perf_counter() - t_start,
        run={k: v for k, v in asdict(spec).items() if k != "config"},
        fingerprint=fp, best_epoch=result.best_epoch,
        best_val_accuracy=result.best_val_accuracy,
        train_step_seconds=result.train_step_seconds,
        eval_seconds=time.perf_counter() - t_eval,
        resumed_from_epoch=result.resumed_from_epoch, threads=spec.threads,
        model_sha256=sha256_file(out / "model.pt"))
    write_json(out / "run.json", record)
    if not keep_resume:
        (out / "resume.pt").unlink(missing_ok=True)
    return record

"""One trained network, end to end: data in, checkpoint + history + predictions out.

This is the single code path behind the Snakemake training rules and the
``python -m selfdistill train`` CLI. Outputs of a run directory:

- ``model.pt``: best-validation weights plus what is needed to rebuild the network;
- ``history.csv``: one row per epoch (epoch, lr, train loss/accuracy, val accuracy, time);
- ``preds.npz``: ``{split}_logits`` and ``{split}_targets`` for the un-augmented train, val
  and test splits (SPEC §4: every metric is recomputed from the logits);
- ``run.json``: provenance (resolved config, seed, git, versions, device, wall time, inputs).

``resume.pt`` (not an output) holds the in-progress state and is deleted on success.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from .augment import InputPipeline, build_input_pipeline
from .checkpoint import ResumeIdentity
from .data import SPLITS, load_manifest, load_split
from .grid import csv_param
from .io import atomic_path, ensure_writable_dir, sha256_file, write_csv, write_json, write_npz
from .methods import get_method
from .models import build_model
from .objectives import Objective
from .provenance import provenance
from .train import TrainConfig, derive_seed, fingerprint, fit, predict_logits, select_device

__all__ = ["OUTPUT_FILES", "RunSpec", "TeacherError", "load_teacher", "spec_from_params",
           "train_bundle", "train_run"]

log = logging.getLogger(__name__)
OUTPUT_FILES = ("model.pt", "history.csv", "preds.npz", "run.json")


class TeacherError(RuntimeError):
    """The SD teacher checkpoint is missing or does not match the student."""


@dataclass(frozen=True)
class RunSpec:
    """Identity and inputs of one trained network.

    ``param`` is the swept strength of the method (None for ce and sd); ``options`` are the
    method's keyword options (its config block ``methods.<method>``, SPEC §3), defaults of
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
                             f"strength {m.swept} ({m.symbol}, SPEC §{m.section})")
        m.resolve(self.options)  # unknown option keys raise here, before any training
        if self.method == "sd" and (self.gen < 1 or not self.teacher):
            raise ValueError(f"{self.describe()}: sd needs gen >= 1 and a teacher checkpoint "
                             f"(generation 0 is the ce run, SPEC §3.4)")
        if self.method != "sd" and self.gen != 0:
            raise ValueError(f"{self.describe()}: gen must be 0 for method {self.method}")


def load_teacher(path: str | Path, arch: str, num_classes: int, input_shape: tuple[int, ...],
                 device: torch.device) -> torch.nn.Module:
    """Rebuild the teacher from ``model.pt``, checking it matches the student (SPEC §3.4)."""
    p = Path(path)
    if not p.exists():
        raise TeacherError(f"teacher checkpoint {p} is missing: train the previous generation "
                           f"first (snakemake {p}).")
    try:
        ckpt = torch.load(p, map_location=device, weights_only=False)
    except Exception as err:
        raise TeacherError(f"teacher checkpoint {p} cannot be read ({err}); delete it and "
                           f"re-run its training rule.") from err
    got = (ckpt.get("arch"), ckpt.get("num_classes"), tuple(ckpt.get("input_shape", ())))
    want = (arch, num_classes, tuple(input_shape))
    if got != want:
        raise TeacherError(f"teacher checkpoint {p} is incompatible: it holds arch/classes/input "
                           f"{got}, the student needs {want}. SD teaches a network of the same "
                           f"architecture on the same dataset; point --teacher at such a run.")
    teacher = build_model(arch, num_classes, tuple(input_shape))
    teacher.load_state_dict(ckpt["state_dict"])
    return teacher.to(device).eval()


def _ema_model(spec: RunSpec, k: int, shape: tuple[int, ...],
               device: torch.device) -> torch.nn.Module:
    """BS ranking network: same architecture, its own random init (SPEC §3.5)."""
    torch.manual_seed(derive_seed(spec.seed, spec.gen, "ema-init"))
    return build_model(spec.arch, k, shape).to(device)


def _objective(spec: RunSpec, meta: Mapping[str, Any], device: torch.device) -> Objective:
    """The run's objective, built by the registry from the run state its constructor
    requires: the SD teacher (SPEC §3.4), the BS EMA network and Beta sampler (SPEC §3.5)."""
    shape, k = tuple(meta["input_shape"]), int(meta["num_classes"])
    providers = {
        "teacher": lambda: load_teacher(spec.teacher, spec.arch, k, shape, device),
        "ema_model": lambda: _ema_model(spec, k, shape, device),
        "generator": lambda: torch.Generator().manual_seed(derive_seed(spec.seed, "beta")),
    }
    method = get_method(spec.method)
    missing = [name for name in method.requires() if name not in providers]
    if missing:
        raise TypeError(f"objective {method.objective_name} requires {missing}, which "
                        f"run._objective cannot provide (known: {sorted(providers)})")
    state = {name: providers[name]() for name in method.requires()}
    return method.build(spec.param, spec.options, **state)


def build_pipeline(meta: Mapping[str, Any], cfg: TrainConfig) -> InputPipeline:
    """Stored inputs → network inputs: scaling, SPEC §2 augmentation, normalisation.

    Augmentation runs in pixel space before normalisation, so crop padding is pixel 0
    (SPEC §2: zero padding before normalisation).
    """
    return build_input_pipeline(cfg.augment, cfg.augment_padding, meta.get("normalize"),
                                meta.get("input_size"))


def run_fingerprint(spec: RunSpec, manifest: Mapping[str, Any]) -> str:
    payload = {"spec": {k: v for k, v in asdict(spec).items() if k not in ("config", "out_dir",
                                                                          "threads")},
               "data": manifest["sha256"],
               "teacher": sha256_file(spec.teacher) if spec.teacher else None}
    return fingerprint(payload)


def spec_from_params(params: Mapping[str, Any]) -> RunSpec:
    """Build a :class:`RunSpec` from the plain dict of :func:`selfdistill.grid.run_params`."""
    p = dict(params)
    train = dict(p.pop("train"))
    train["milestones"] = tuple(train["milestones"])
    options = get_method(p["method"]).resolve(p.pop("options"))
    return RunSpec(train=TrainConfig(**train), options=options, **p)


def train_bundle(specs: list[RunSpec]) -> list[dict[str, Any]]:
    """Train several runs in one process, in the given (DAG) order.

    Each run keeps its final resume file until the whole bundle is done, so that if the
    bundle fails and Snakemake removes its outputs, a rerun rebuilds finished runs from
    their saved final state (evaluation only) instead of training them again.
    """
    records = [train_run(spec, keep_resume=True) for spec in specs]
    for spec in specs:
        (Path(spec.out_dir) / "resume.pt").unlink(missing_ok=True)
    return records


def train_run(spec: RunSpec, keep_resume: bool = False) -> dict[str, Any]:
    """Train one network per ``spec`` and write its outputs; returns the provenance record."""
    t_start = time.perf_counter()
    spec.validate()
    out = ensure_writable_dir(spec.out_dir)
    torch.set_num_threads(spec.threads)
    device = select_device(spec.device)
    manifest = load_manifest(spec.dataset_dir)
    train, val, test = (load_split(spec.dataset_dir, s) for s in SPLITS)
    shape, k = tuple(manifest["input_shape"]), int(manifest["num_classes"])
    objective = _objective(spec, manifest, device)  # teacher errors surface before training
    torch.manual_seed(derive_seed(spec.seed, spec.gen, "init"))
    model = build_model(spec.arch, k, shape)
    fp = run_fingerprint(spec, manifest)
    pipeline = build_pipeline(manifest, spec.train)
    result = fit(model, objective, train, val, spec.train, device,
                 resume=ResumeIdentity(out / "resume.pt", fp, spec.describe()), pipeline=pipeline,
                 on_epoch=lambda row: log.info("%s epoch %d %s", spec.describe(), row["epoch"],
                                               {k: round(v, 4) for k, v in row.items()}))
    t_eval = time.perf_counter()
    arrays: dict[str, Any] = {}
    for split in (train, val, test):
        x = torch.as_tensor(split.x, device=device)
        logits = predict_logits(result.model, x, spec.train.eval_batch_size,
                                spec.train.channels_last, pipeline.eval)
        arrays[f"{split.name}_logits"] = logits.numpy()
        arrays[f"{split.name}_targets"] = split.y
    write_npz(out / "preds.npz", **arrays)
    fields = {"dataset": spec.dataset, "arch": spec.arch, "method": spec.method,
              "param": csv_param(spec.param), "seed": spec.seed,
              "gen": spec.gen}
    write_csv(out / "history.csv", [{**fields, **row} for row in result.history])
    ckpt = {"state_dict": result.model.state_dict(), "arch": spec.arch, "num_classes": k,
            "input_shape": list(shape), "best_epoch": result.best_epoch,
            "best_val_accuracy": result.best_val_accuracy, "fingerprint": fp,
            "method": spec.method, "param": spec.param, "seed": spec.seed, "gen": spec.gen}
    with atomic_path(out / "model.pt") as tmp, open(tmp, "wb") as fh:
        torch.save(ckpt, fh)  # a file object: the zip records carry no temp-file name
    record = provenance(
        config=dict(spec.config), device=result.device,
        inputs=[Path(spec.dataset_dir) / f for f in manifest["sha256"]] +
        ([spec.teacher] if spec.teacher else []),
        wall_time_s=time.perf_counter() - t_start,
        run={k: v for k, v in asdict(spec).items() if k != "config"},
        fingerprint=fp, best_epoch=result.best_epoch,
        best_val_accuracy=result.best_val_accuracy,
        train_step_seconds=result.train_step_seconds,
        eval_seconds=time.perf_counter() - t_eval,
        resumed_from_epoch=result.resumed_from_epoch, threads=spec.threads)
    write_json(out / "run.json", record)
    if not keep_resume:
        (out / "resume.pt").unlink(missing_ok=True)
    return record

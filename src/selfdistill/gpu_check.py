"""The paper path's acceptance test on one GPU (``bash ci/gpu_check.sh``; at most 8 minutes
on one H200).

    python -m selfdistill.gpu_check --out results/gpu_check          # on CUDA
    python -m selfdistill.gpu_check --out /tmp/dry --device cpu      # CPU dry run, tiny sizes

Six checks, each a pass/fail line and its figures in ``{out}/summary.md`` and
``{out}/summary.json`` (:func:`write_summary`):

1. ``workflow``: config/paper_smoke.yaml through the real ``snakemake`` CLI on CUDA in the
   default mode (fp32, deterministic kernels), on a fabricated CIFAR-10 archive in the real
   format from a local mirror (the machine may have no internet); images/s per network;
2. ``resume``: the same command in a second directory, its first training job sent SIGTERM
   mid-epoch (as SLURM does before a time limit), then the same command again: it resumes
   from the resume file and finishes, and its ``results/metrics.csv`` equals check 1's byte
   for byte;
3. ``host_sync``: every objective path (:func:`selfdistill.bench.method_cases`) trained by
   ``fit`` under ``torch.cuda.set_sync_debug_mode("error")``, images in fp32 (deterministic),
   tf32 and bf16, signals (SD's precomputed teacher) in fp32;
4. ``precision``: the precision suite (:func:`selfdistill.bench.precision_trajectories`):
   fp32, tf32 and bf16 from one initialisation on the same batches, loss agreement with fp32
   and images/s;
5. ``compile``: the same with ``torch.compile`` against eager, in fp32: agreement, compile
   time and images/s;
6. ``slot_locks``: two ``selfdistill train`` jobs started together on one GPU: each takes
   the GPU's slot lock (:func:`selfdistill.devices.acquire_device`), the second waits for the
   first, both finish.

Pass thresholds are written next to each check. On the CPU (``--device cpu``) every check
runs at tiny sizes to catch crashes before GPU time is spent; what only CUDA can show (host
syncs, TF32/bf16 numerics, slot locks) is marked as not measured there.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .io import write_text

REPO = Path(__file__).resolve().parents[2]  # the checkout this module runs from (src/ layout)
CHECKS = ("workflow", "resume", "host_sync", "precision", "compile", "slot_locks")

# Largest |loss - fp32 loss| / fp32 loss at the first step (the same weights and inputs, so
# only the arithmetic differs): TF32 convolutions carry 10 mantissa bits, bf16 autocast 7;
# through ResNet-34's 34 layers the first-step loss moved well under 1 % / 5 % in our reading
# of their rounding (2^-11, 2^-8 per operation, errors largely averaging out in the loss).
FIRST_STEP_TOLERANCE = {"fp32": 0.0, "tf32": 0.01, "bf16": 0.05}
COMPILE_TOLERANCE = 1e-3  # fp32: inductor reorders sums only (relative first-step loss)


@dataclass(frozen=True)
class Sizes:
    """How big each check is: GPU sizes fit the 8-minute budget, CPU sizes only run."""

    per_class: int = 300  # fabricated CIFAR-10 training images per class (x10 classes)
    val_size: int = 500  # of those, held out
    batch_size: int = 128
    epochs: int = 2  # as config/paper_smoke.yaml
    sync_examples: int = 384  # host-sync check: examples per fit (3 steps of 128)
    sync_arch: str = "resnet18"
    precision_arch: str = "resnet34"
    precision_steps: int = 50
    precision_batch: int = 128
    compile_arch: str = "resnet18"
    compile_steps: int = 30


GPU_SIZES = Sizes()
CPU_SIZES = Sizes(per_class=10, val_size=20, batch_size=16, epochs=2, sync_examples=48,
                  sync_arch="cnn_digits", precision_arch="cnn_digits", precision_steps=4,
                  precision_batch=16, compile_arch="cnn1d", compile_steps=4)


@dataclass
class Check:
    """One check's outcome: ``passed`` None when it could not apply here (reason in detail)."""

    name: str
    passed: bool | None
    figures: dict[str, Any] = field(default_factory=dict)
    detail: str = ""
    seconds: float = 0.0

    @property
    def status(self) -> str:
        return {True: "PASS", False: "FAIL", None: "SKIP"}[self.passed]


# --------------------------------------------------------------------------- summary


def overall(checks: list[Check]) -> bool:
    """True when no check failed (skipped ones do not count) and at least one passed."""
    return all(c.passed is not False for c in checks) and any(c.passed for c in checks)


def write_summary(out: Path, checks: list[Check], environment: dict[str, Any]) -> list[str]:
    """``summary.json`` (every figure, machine-readable) and ``summary.md`` under ``out``;
    returns the pass/fail lines (also the Markdown's first section)."""
    lines = [f"{c.status} {c.name}: {c.detail}" for c in checks]
    lines.append(f"{'PASS' if overall(checks) else 'FAIL'} overall: "
                 f"{sum(c.passed is True for c in checks)} passed, "
                 f"{sum(c.passed is False for c in checks)} failed, "
                 f"{sum(c.passed is None for c in checks)} skipped")
    record = {"environment": environment, "passed": overall(checks),
              "checks": [{**asdict(c), "status": c.status} for c in checks]}
    write_text(out / "summary.json", json.dumps(record, indent=2, sort_keys=True,
                                                default=str) + "\n")
    md = ["# GPU check", "", "```", *lines, "```", "", "## Environment", ""]
    md += [f"- {k}: {v}" for k, v in environment.items()]
    for c in checks:
        md += ["", f"## {c.name}: {c.status} ({c.seconds:.0f} s)", "", c.detail, ""]
        md += [f"- {k}: {_shown(v)}" for k, v in c.figures.items()]
    write_text(out / "summary.md", "\n".join(md) + "\n")
    return lines


def _shown(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{k} {_shown(v)}" for k, v in value.items())
    return str(value)


def environment(device: torch.device) -> dict[str, Any]:
    env: dict[str, Any] = {"torch": torch.__version__, "python": sys.version.split()[0],
                           "cuda": torch.version.cuda, "device": str(device)}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                   cudnn=torch.backends.cudnn.version())
    return env


def timed(name: str, fn: Callable[[], Check]) -> Check:
    """Run one check; an exception is its failure, with the error's last line as detail."""
    t0 = time.perf_counter()
    try:
        check = fn()
    except Exception as err:  # a crashed check is a failed check; the others still run
        tb = traceback.format_exc().strip().splitlines()
        check = Check(name, False, {"traceback": " | ".join(tb[-6:])},
                      f"raised {type(err).__name__}: {str(err)[:300]}")
    check.seconds = time.perf_counter() - t0
    return check


# --------------------------------------------------------------------------- training steps


def _random_split(kind: str, n: int, seed: int = 0):
    from .data import Split

    rng = np.random.default_rng(seed)
    if kind == "signals":
        x = rng.normal(size=(n, 1, 40)).astype(np.float32)
    else:
        x = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
    y = rng.integers(0, 10, n).astype(np.int64)
    return Split(x, y, "train"), Split(x[:128], y[:128], "val")


def host_sync(device: torch.device, sizes: Sizes) -> Check:
    """Every objective path's steps in ``fit`` under the sync debug mode "error" (pass: no
    step raised; ``fit`` restores the mode after its loop)."""
    from .augment import build_input_pipeline
    from .bench import build_objective, method_cases
    from .models import build_model
    from .train import TrainConfig, fit

    plan = [("images", p) for p in ("fp32", "tf32", "bf16")] + [("signals", "fp32")]
    failures, runs = [], 0
    for kind, precision in plan:
        tr, va = _random_split(kind, sizes.sync_examples)
        arch, shape = (sizes.sync_arch, (3, 32, 32)) if kind == "images" else ("cnn1d", (1, 40))
        aug = "crop_flip" if kind == "images" else "none"
        pipe = build_input_pipeline(aug, 4, {"mean": [0.49, 0.48, 0.45], "std": [0.25] * 3}
                                    if kind == "images" else None)
        cfg = TrainConfig(epochs=1, milestones=(), seed=0, batch_size=sizes.sync_examples // 3,
                          augment=aug, channels_last=kind == "images", precision=precision,
                          deterministic=precision == "fp32")
        for case in method_cases():
            try:
                objective = build_objective(case, arch, 10, shape, device)
                torch.manual_seed(0)
                result = fit(build_model(arch, 10, shape), objective, tr, va, cfg, device,
                             pipeline=pipe, sync_check=True)
                if not math.isfinite(result.history[0]["train_loss"]):
                    failures.append(f"{case.name}/{kind}/{precision}: non-finite loss")
            except Exception as err:  # the sync debug mode raises RuntimeError
                failures.append(f"{case.name}/{kind}/{precision}: {type(err).__name__}: "
                                f"{str(err).splitlines()[0][:200]}")
            runs += 1
    measured = device.type == "cuda"
    detail = (f"{runs} step loops ({len(method_cases())} objective paths; images fp32 "
              f"deterministic, tf32, bf16; signals fp32), "
              + ("none synchronised the host" if measured else "ran (no sync check on CPU)"))
    if failures:
        detail = f"{len(failures)} of {runs} step loops failed: " + "; ".join(failures[:6])
    passed = not failures if measured or failures else None
    return Check("host_sync", passed, {"step_loops": runs, "failures": len(failures)}, detail)


def _first_step_rel(losses: list[float], ref: list[float]) -> float:
    return abs(losses[0] - ref[0]) / max(abs(ref[0]), 1e-12)


def precision(device: torch.device, sizes: Sizes, out: Path) -> Check:
    """fp32/tf32/bf16 from one init on the same batches (pass: finite losses, the first
    step's loss within FIRST_STEP_TOLERANCE of fp32's; on the CPU the modes are equal)."""
    from .bench import precision_agreement, precision_trajectories
    from .io import write_csv

    traj = precision_trajectories("cifar", sizes.precision_arch, sizes.precision_steps, "sd",
                                  batch=sizes.precision_batch, device=str(device))
    rows = precision_agreement(traj)
    write_csv(out / "precision.csv", rows)
    write_csv(out / "precision_steps.csv", [{"step": i + 1, **{m: t["losses"][i]
                                                               for m, t in traj.items()}}
                                            for i in range(sizes.precision_steps)])
    figures: dict[str, Any] = {"arch": sizes.precision_arch, "steps": sizes.precision_steps,
                               "batch": sizes.precision_batch}
    bad = []
    for r in rows:
        mode = r["precision"]
        first = _first_step_rel(traj[mode]["losses"], traj["fp32"]["losses"])
        figures[mode] = {"images_per_s": r["images_per_s"], "x_fp32": r["speedup_vs_fp32"],
                         "first_step_rel_diff": first, "max_abs_loss_diff": r["max_abs_loss_diff"],
                         "final_loss_diff": r["final_loss_diff"], "final_loss": r["final_loss"]}
        tol = FIRST_STEP_TOLERANCE[mode] if device.type == "cuda" else 0.0
        if not all(math.isfinite(v) for v in traj[mode]["losses"]) or first > tol:
            bad.append(f"{mode} first-step relative loss diff {first:.2e} > {tol:g}")
    detail = (f"{sizes.precision_arch} SD, {sizes.precision_steps} steps of "
              f"{sizes.precision_batch}: " + ("; ".join(bad) if bad else ", ".join(
                  f"{m} {figures[m]['images_per_s']:.0f} img/s" for m in traj)))
    return Check("precision", not bad, figures, detail)


def compile_agreement(device: torch.device, sizes: Sizes) -> Check:
    """Eager against ``torch.compile`` in fp32 with deterministic kernels, one init, the same
    batches (pass: finite losses, first-step loss within COMPILE_TOLERANCE)."""
    import copy

    from .bench import _objective, precision_batches, trajectory
    from .models import build_model
    from .train import set_determinism

    kind = "mnist1d" if sizes.compile_arch == "cnn1d" else "cifar"
    batches, k = precision_batches(kind, sizes.compile_steps, sizes.precision_batch, device)
    shape = tuple(batches[0][0].shape[1:])
    torch.manual_seed(0)
    init = build_model(sizes.compile_arch, k, shape).to(device)
    if len(shape) == 3:
        init.to(memory_format=torch.channels_last)
    set_determinism(True, device, compiling=True)
    runs = {}
    for name, compiled in (("eager", False), ("compiled", True)):
        t0 = time.perf_counter()
        losses, seconds = trajectory(copy.deepcopy(init), _objective("ce", sizes.compile_arch,
                                                                     k, shape, device),
                                     batches, "fp32", warmup=2, compile_model=compiled)
        images = sum(len(yb) for _, yb in batches[2:])
        runs[name] = {"losses": losses, "images_per_s": images / seconds,
                      "first_two_steps_s": time.perf_counter() - t0 - seconds}
    first = _first_step_rel(runs["compiled"]["losses"], runs["eager"]["losses"])
    max_diff = max(abs(a - b) for a, b in zip(runs["compiled"]["losses"],
                                               runs["eager"]["losses"], strict=True))
    figures = {"arch": sizes.compile_arch, "steps": sizes.compile_steps,
               "eager_images_per_s": runs["eager"]["images_per_s"],
               "compiled_images_per_s": runs["compiled"]["images_per_s"],
               "speedup": runs["compiled"]["images_per_s"] / runs["eager"]["images_per_s"],
               "compile_seconds": runs["compiled"]["first_two_steps_s"],
               "first_step_rel_diff": first, "max_abs_loss_diff": max_diff}
    finite = all(math.isfinite(v) for r in runs.values() for v in r["losses"])
    passed = finite and first <= COMPILE_TOLERANCE
    detail = (f"{sizes.compile_arch} fp32 CE: compiled x{figures['speedup']:.2f} of eager, "
              f"first-step relative loss diff {first:.1e} (limit {COMPILE_TOLERANCE:g}), "
              f"compile {figures['compile_seconds']:.0f} s")
    return Check("compile", passed, figures, detail)


# --------------------------------------------------------------------------- workflow


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def fabricate_cifar10(path: Path, per_class: int, seed: int = 0) -> dict[str, str]:
    """cifar-10-python.tar.gz in the real format (pickled batches, as torchvision reads them)
    with ``per_class`` random training images per class; returns its sha256 and md5."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    with tarfile.open(path, "w:gz") as tar:
        for name in names:
            per = max(1, per_class // 5)  # per class in each of the 6 batches
            labels = np.repeat(np.arange(10), per)
            x = rng.integers(0, 256, (len(labels), 3 * 32 * 32), dtype=np.uint8)
            entry = {"batch_label": name, "labels": labels.tolist(), "data": x,
                     "filenames": [f"{name}_{j}.png" for j in range(len(labels))]}
            _add(tar, f"cifar-10-batches-py/{name}", pickle.dumps(entry, protocol=2))
        meta = {"label_names": [f"class{k}" for k in range(10)], "num_vis": 3072}
        _add(tar, "cifar-10-batches-py/batches.meta", pickle.dumps(meta, protocol=2))
    data = path.read_bytes()
    return {"sha256": hashlib.sha256(data).hexdigest(), "md5": hashlib.md5(data).hexdigest()}


def overlay(mirror: Path, sums: dict[str, str], device: torch.device, sizes: Sizes) -> dict:
    """The config loaded after paper_smoke.yaml: the local mirror of the fabricated archive,
    the default execution mode (fp32, deterministic), CUDA asked for explicitly (a CPU
    fallback would pass unnoticed); on the CPU, CPU sizes and no GPU resources."""
    out: dict[str, Any] = {
        "datasets": {"cifar10": {"source": "cifar10", "val_size": sizes.val_size,
                                 "split_seed": 0, "augment": "crop_flip", "augment_padding": 4,
                                 "mirror": str(mirror), **sums}},
        "execution": {"device": "cuda" if device.type == "cuda" else "cpu",
                      "threads": 4 if device.type == "cuda" else 1,
                      "bundle": "none", "deterministic": True, "channels_last": True,
                      "precision": "fp32", "compile": False}}
    if sizes.batch_size != 128 or sizes.epochs != 2:
        out["train"] = {"epochs": sizes.epochs, "milestones": [1], "batch_size":
                        sizes.batch_size, "lr": 0.1, "momentum": 0.9, "weight_decay": 1.0e-4,
                        "nesterov": False, "gamma": 0.1}
    if device.type != "cuda":
        res = {"gpu": 0, "mem_mb": 2000, "runtime": 20}
        out["experiments"] = [{"dataset": "cifar10", "arch": a, "resources": res}
                              for a in ("resnet34", "densenet_bc100")]
        out["resources"] = {**res, "checkpoint_every": 1}
    return out


def workdir(dest: Path, config: dict) -> Path:
    """A user's clone (Snakefile, workflow/, config/, profiles/, envs/) plus the overlay."""
    import yaml

    if not (REPO / "Snakefile").is_file():
        raise FileNotFoundError(f"{REPO} holds no Snakefile: run the GPU check from a checkout "
                                f"(bash ci/gpu_check.sh)")
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    shutil.copy2(REPO / "Snakefile", dest / "Snakefile")
    for name in ("workflow", "config", "profiles", "envs"):
        if (REPO / name).exists():
            shutil.copytree(REPO / name, dest / name,
                            ignore=shutil.ignore_patterns("__pycache__"))
    (dest / "gpu_check.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return dest


def smoke_command(device: torch.device) -> list[str]:
    cores = "4" if device.type == "cuda" else "2"
    cmd = ["snakemake", "--cores", cores, "all", "--configfile", "config/config.yaml",
           "config/paper_smoke.yaml", "gpu_check.yaml"]
    return cmd + (["--resources", "gpu=1"] if device.type == "cuda" else [])


def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    src = str(REPO / "src")  # the checkout's package, installed or not
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _snakemake(wf: Path, cmd: list[str], log: Path, timeout: float) -> int:
    with open(log, "w") as fh:
        proc = subprocess.run(cmd, cwd=wf, stdout=fh, stderr=subprocess.STDOUT, env=_env(),
                              timeout=timeout)
    return proc.returncode


def network_speeds(wf: Path, images: int) -> dict[str, float]:
    """Training images/s of each network's last epoch (history.csv ``train_step_s``), keyed
    ``arch/method``; ``images``: training examples per epoch."""
    import csv

    speeds = {}
    for hist in sorted((wf / "results").glob("*/*/*/*/seed*/gen*/history.csv")):
        rows = list(csv.DictReader(hist.open()))
        parts = hist.relative_to(wf / "results").parts  # dataset, arch, method, param, ...
        speeds[f"{parts[1]}/{parts[2]}"] = images / float(rows[-1]["train_step_s"])
    return speeds


def workflow(device: torch.device, sizes: Sizes, work: Path, out: Path) -> Check:
    """paper_smoke.yaml through snakemake (pass: exit 0, every network's run.json on the
    check's device with deterministic kernels, finite metrics)."""
    import pandas as pd

    sums = fabricate_cifar10(work / "mirror" / "cifar-10-python.tar.gz", sizes.per_class)
    config = overlay(work / "mirror", sums, device, sizes)
    wf = workdir(work / "uninterrupted", config)
    t0 = time.perf_counter()
    rc = _snakemake(wf, smoke_command(device), out / "workflow.log", 400)
    wall = time.perf_counter() - t0
    if rc != 0:
        return Check("workflow", False, {"wall_s": wall}, f"snakemake exited {rc} (see "
                     f"workflow.log)")
    records = [json.loads(p.read_text()) for p in (wf / "results").glob("**/run.json")]
    devices = sorted({str(r.get("device")) for r in records})
    modes = sorted({str(r.get("run", {}).get("train", {}).get("deterministic"))
                    for r in records})
    metrics = pd.read_csv(wf / "results" / "metrics.csv")
    values = metrics.drop(columns=["param"]).select_dtypes("number")  # param: empty for ce, sd
    finite = bool(np.isfinite(values.to_numpy()).all())
    n_train = 10 * 5 * max(1, sizes.per_class // 5) - sizes.val_size
    figures = {"wall_s": wall, "networks": len(records), "metrics_rows": len(metrics),
               "devices": devices, "deterministic": modes,
               "train_images_per_epoch": n_train,
               "images_per_s": network_speeds(wf, n_train)}
    ok = (len(records) == 10 and finite and modes == ["True"]
          and all(d.startswith(device.type) for d in devices))
    detail = (f"{len(records)} networks (ResNet-34, DenseNet-BC-100; ce, sd, ls, er, bs) on "
              f"{', '.join(devices)}, fp32 deterministic, {wall:.0f} s, metrics "
              f"{'finite' if finite else 'NOT finite'}")
    return Check("workflow", ok, figures, detail)


def _training_jobs(root_pid: int) -> list[Any]:
    """The training job processes (snakemake's rule scripts) below ``root_pid``."""
    import psutil

    try:
        children = psutil.Process(root_pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    jobs = []
    for child in children:
        try:
            cmd = " ".join(child.cmdline())
        except psutil.Error:
            continue
        if "python" in cmd and ".snakemake/scripts" in cmd and "train" in cmd:
            jobs.append(child)
    return jobs


def sigterm_mid_epoch(wf: Path, cmd: list[str], log: Path, timeout: float) -> dict[str, Any]:
    """Start ``cmd``; once a training job has written its first resume file (epoch 1 done),
    send that job SIGTERM (epoch 2 under way); wait for snakemake to stop."""
    from .checkpoint import read_resume

    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, cwd=wf, stdout=fh, stderr=subprocess.STDOUT, env=_env(),
                                start_new_session=True)
        deadline, sent, resume = time.monotonic() + timeout, None, None
        try:
            while proc.poll() is None and time.monotonic() < deadline and sent is None:
                found = list((wf / "results").glob("*/*/*/*/seed*/gen*/resume.pt"))
                jobs = _training_jobs(proc.pid) if found else []
                if jobs:
                    for job in jobs:
                        job.send_signal(signal.SIGTERM)
                    sent, resume = time.monotonic(), found[0]
                time.sleep(0.005)
            rc = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            rc = None
    info: dict[str, Any] = {"first_rc": rc, "sigterm_sent": sent is not None}
    if resume is not None and resume.exists():
        state = read_resume(resume)["state"]
        info.update(resume_file=str(resume.relative_to(wf)),
                    stopped_epoch=state["epoch"] + 1, stopped_step=state["step_in_epoch"])
    return info


def resume(device: torch.device, sizes: Sizes, work: Path, out: Path) -> Check:
    """SIGTERM mid-epoch, the same command again (pass: the job was stopped inside an epoch,
    the second command exits 0 after resuming, metrics.csv equals the workflow check's)."""
    reference = work / "uninterrupted" / "results" / "metrics.csv"
    if not reference.is_file():
        return Check("resume", False, {}, "no uninterrupted run to compare with (the workflow "
                     "check failed)")
    config = overlay(work / "mirror", _sums(work), device, sizes)
    wf = workdir(work / "interrupted", config)
    cmd = smoke_command(device)
    info = sigterm_mid_epoch(wf, cmd, out / "resume_interrupted.log", 400)
    rc = _snakemake(wf, cmd, out / "resume_again.log", 400)
    resumed = [str(p.parent.relative_to(wf)) for p in (wf / "results").glob("**/run.json")
               if json.loads(p.read_text()).get("resumed_from_epoch") is not None]
    info.update(second_rc=rc, resumed=bool(resumed), resumed_networks=resumed)
    same = rc == 0 and (wf / "results" / "metrics.csv").read_bytes() == reference.read_bytes()
    info["metrics_identical"] = same
    mid = info.get("stopped_step", 0) > 0
    ok = bool(info["sigterm_sent"] and mid and info["resumed"] and same)
    detail = (f"SIGTERM at epoch {info.get('stopped_epoch')} step {info.get('stopped_step')} "
              f"(first run exit {info['first_rc']}); same command again: exit {rc}, "
              f"{'resumed' if info['resumed'] else 'did NOT resume'}, metrics.csv "
              f"{'identical to' if same else 'DIFFERS from'} the uninterrupted run")
    return Check("resume", ok, info, detail)


def _sums(work: Path) -> dict[str, str]:
    data = (work / "mirror" / "cifar-10-python.tar.gz").read_bytes()
    return {"sha256": hashlib.sha256(data).hexdigest(), "md5": hashlib.md5(data).hexdigest()}


# --------------------------------------------------------------------------- slot locks


def _job_env(lock_dir: Path) -> tuple[dict[str, str], str]:
    """The two jobs' environment: their own lock directory, no SLURM, and every GPU of a
    one-GPU machine visible (a single-entry CUDA_VISIBLE_DEVICES is the scheduler-pinned
    mode, which takes no lock)."""
    env = {k: v for k, v in _env().items() if not k.startswith("SLURM_")}
    env["SELFDISTILL_GPU_LOCK_DIR"] = str(lock_dir)
    try:
        gpus = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True,
                              timeout=30).stdout.strip().splitlines()
    except (OSError, subprocess.SubprocessError):
        gpus = []
    if len(gpus) == 1:
        env.pop("CUDA_VISIBLE_DEVICES", None)
    return env, f"{len(gpus)} GPU(s) listed by nvidia-smi"


def slot_locks(device: torch.device, work: Path, out: Path) -> Check:
    """Two ``selfdistill train`` jobs at once on one GPU (pass: both exit 0, both held the
    same lock file, their training windows do not overlap)."""
    import csv

    from .data import prepare_dataset

    data = work / "slots" / "mnist1d"
    prepare_dataset("mnist1d", {"source": "mnist1d", "num_samples": 4000, "train_fraction": 0.8,
                                "generator_seed": 42, "val_size": 200, "split_seed": 0}, data)
    env, gpus = _job_env(work / "slots" / "locks")
    dev = "auto" if device.type == "cuda" else "cpu"
    procs = []
    for i in range(2):
        cmd = [sys.executable, "-m", "selfdistill", "train", "--data", str(data), "--arch",
               "cnn1d", "--method", "ce", "--epochs", "4", "--milestones", "2", "--seed", str(i),
               "--device", dev, "--out", str(work / "slots" / f"job{i}")]
        log = open(out / f"slot_job{i}.log", "w")
        procs.append((subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), log))
    rcs = []
    for proc, log in procs:
        rcs.append(proc.wait(timeout=300))
        log.close()
    if any(rcs):
        return Check("slot_locks", False, {"exit_codes": rcs}, f"a job failed: exit codes {rcs}")
    runs = []
    for i in range(2):
        record = json.loads((work / "slots" / f"job{i}" / "run.json").read_text())
        rows = list(csv.DictReader((work / "slots" / f"job{i}" / "history.csv").open()))
        runs.append({"lock": (record.get("device_record") or {}).get("slot_lock"),
                     "device": record.get("device"),
                     "start": float(rows[0]["step_start_unix"]),
                     "end": float(rows[-1]["step_end_unix"])})
    first, second = sorted(runs, key=lambda r: r["start"])
    figures = {"gpus": gpus, "locks": [r["lock"] for r in runs],
               "devices": [r["device"] for r in runs],
               "second_started_after_first_s": second["start"] - first["end"]}
    if device.type != "cuda":
        return Check("slot_locks", None, figures, "both jobs ran on the CPU; slot locks apply "
                     "to CUDA devices only")
    locked = first["lock"] is not None and first["lock"] == second["lock"]
    serial = second["start"] >= first["end"]
    detail = (f"two jobs, {gpus}: lock {first['lock']} held by "
              f"{'both' if locked else 'NOT both'}, training windows "
              f"{'in turn' if serial else 'OVERLAPPING'} "
              f"(gap {figures['second_started_after_first_s']:+.1f} s)")
    return Check("slot_locks", locked and serial, figures, detail)


# --------------------------------------------------------------------------- main


def run_checks(out: Path, device: torch.device, sizes: Sizes,
               only: tuple[str, ...] = CHECKS) -> list[Check]:
    """The checks named in ``only``, in :data:`CHECKS` order; work files under out/work.
    The summary is rewritten after each check, so a run cut short keeps what it measured."""
    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)
    table: dict[str, Callable[[], Check]] = {
        "workflow": lambda: workflow(device, sizes, work, out),
        "resume": lambda: resume(device, sizes, work, out),
        "host_sync": lambda: host_sync(device, sizes),
        "precision": lambda: precision(device, sizes, out),
        "compile": lambda: compile_agreement(device, sizes),
        "slot_locks": lambda: slot_locks(device, work, out),
    }
    checks = []
    for name in CHECKS:
        if name in only:
            checks.append(timed(name, table[name]))
            print(f"{checks[-1].status} {name} ({checks[-1].seconds:.0f} s): "
                  f"{checks[-1].detail}", flush=True)
            write_summary(out, checks, environment(device))
    return checks


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(allow_abbrev=False, prog="python -m selfdistill.gpu_check", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="results/gpu_check", help="summary and work files")
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"),
                   help="cuda (the check) or cpu (a dry run at tiny sizes)")
    p.add_argument("--only", nargs="+", choices=CHECKS, default=list(CHECKS),
                   help="run only these checks")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("skipped: no CUDA device")
        return 0
    # before any cuBLAS call of this process: deterministic cuBLAS reads it at first use
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    device = torch.device(args.device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    checks = run_checks(out, device, GPU_SIZES if device.type == "cuda" else CPU_SIZES,
                        tuple(args.only))
    lines = write_summary(out, checks, environment(device))
    print("\n".join(lines))
    return 0 if overall(checks) else 1


if __name__ == "__main__":
    sys.exit(main())

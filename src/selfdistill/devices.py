"""One device per training job, chosen once and loudly (methods §2: no hard-coded CUDA).

:func:`acquire_device` turns ``execution.device`` and ``resources.gpu`` into a
:class:`DeviceLease`:

- **scheduler-pinned**: exactly one CUDA device is visible and a scheduler chose it
  (``CUDA_VISIBLE_DEVICES`` names one device, which SLURM's ``--gpus=1`` sets): the job
  uses ``cuda:0`` of its visible set and takes no lock (two jobs may both see theirs as
  ``cuda:0``);
- **slot-locked**: otherwise, with N visible devices (a workstation running
  ``snakemake --resources gpu=N``, or ``snakemake --resources gpu=4`` inside one
  ``salloc --gpus=4`` allocation), the job takes the first free slot 0..N-1 by an
  ``fcntl.flock(LOCK_EX | LOCK_NB)`` on ``<lock_dir>/gpu<i>.lock``. Inside a SLURM
  allocation the default lock directory gains a ``slurm-<SLURM_JOB_ID>`` level, so jobs of
  one allocation share slots and other allocations on the node (whose devices are other
  GPUs under the same visible names) never block them. The lock belongs to the
  open file description the lease holds, so the OS drops it when the process ends, even on
  SIGKILL. All slots busy: poll up to ``wait_s``, then :class:`GpuSlotsBusyError`. A job
  with ``device: auto`` takes a slot too when CUDA is present, even with ``resources.gpu: 0``;
- **no CUDA**: ``resources.gpu > 0`` or ``execution.device: cuda`` raises
  :class:`CudaUnavailableError` naming the key, before any training work; ``auto`` without
  a GPU request is the CPU; ``device: cpu`` is always the CPU.

Slot locks are advisory: they order this package's jobs among themselves, not other
programs on the same GPUs. ``CUDA_VISIBLE_DEVICES`` listing several devices, under SLURM or
not, is treated as the set to share, and its entries name the lock files (``gpu<entry>.lock``), so
jobs given different sets never block each other. ``DeviceLease.record()`` (``run.json``'s
``device_record``) names the mode that applied: ``scheduler-pinned``, ``slot-locked`` or
``cpu``.
"""

from __future__ import annotations

import errno
import fcntl
import os
import platform
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import torch

__all__ = ["CudaQuery", "CudaUnavailableError", "DeviceLease", "GpuSlotsBusyError",
           "TORCH_CUDA", "acquire_device", "default_lock_dir"]

LOCK_DIR_ENV = "SELFDISTILL_GPU_LOCK_DIR"  # overrides the default lock directory


class CudaUnavailableError(RuntimeError):
    """A GPU was asked for (by ``resources.gpu`` or ``execution.device``) but CUDA is absent."""


class GpuSlotsBusyError(RuntimeError):
    """Every GPU slot stayed locked by other jobs for the whole wait."""


@dataclass(frozen=True)
class CudaQuery:
    """What :func:`acquire_device` asks of CUDA; tests pass a fake with N devices."""

    is_available: Callable[[], bool]
    device_count: Callable[[], int]
    set_device: Callable[[int], None]
    device_name: Callable[[int], str]
    version: str | None  # the CUDA version torch was built for; None: a CPU-only build


TORCH_CUDA = CudaQuery(torch.cuda.is_available, torch.cuda.device_count, torch.cuda.set_device,
                       torch.cuda.get_device_name, torch.version.cuda)


@dataclass
class DeviceLease:
    """The job's device and, in slot-locked mode, the open lock file that reserves it."""

    device: torch.device
    index: int | None  # CUDA index within the visible set; None on the CPU
    name: str  # "NVIDIA H200", or the CPU's name
    visible_devices: str | None  # CUDA_VISIBLE_DEVICES as the job found it
    slot_lock: Path | None  # the held lock file; None when no lock was taken
    mode: str = "cpu"  # "scheduler-pinned", "slot-locked" or "cpu"
    _handle: IO[bytes] | None = field(default=None, repr=False)

    def release(self) -> None:
        """Give the slot back (idempotent); process exit does the same."""
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None

    def record(self) -> dict[str, Any]:
        """The device block of ``run.json``."""
        return {"device": str(self.device), "mode": self.mode, "index": self.index,
                "name": self.name, "visible_devices": self.visible_devices,
                "slot_lock": None if self.slot_lock is None else str(self.slot_lock)}

    def __enter__(self) -> DeviceLease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def default_lock_dir(env: Mapping[str, str] | None = None) -> Path:
    """``$SELFDISTILL_GPU_LOCK_DIR``, else ``$XDG_RUNTIME_DIR/selfdistill-gpu-locks``, else
    ``/tmp/selfdistill-gpu-locks-<uid>``: per user, shared by all of the user's jobs."""
    env = os.environ if env is None else env
    if env.get(LOCK_DIR_ENV):
        return Path(env[LOCK_DIR_ENV])
    runtime = env.get("XDG_RUNTIME_DIR")
    if runtime and Path(runtime).is_dir():
        return Path(runtime) / "selfdistill-gpu-locks"
    return Path(f"/tmp/selfdistill-gpu-locks-{os.getuid()}")


def acquire_device(requested: str, want_gpu: bool, lock_dir: Path | None = None,
                   count: int | None = None, wait_s: float = 120.0, *, poll_s: float = 0.5,
                   cuda: CudaQuery = TORCH_CUDA,
                   env: Mapping[str, str] | None = None) -> DeviceLease:
    """The device of one training job (see the module docstring for the three modes).

    ``requested``: ``execution.device`` (``auto``, ``cpu``, ``cuda`` or ``cuda:N``);
    ``want_gpu``: ``resources.gpu > 0``; ``count``: visible CUDA devices (None: ask
    ``cuda``); ``env``: the environment to read (None: ``os.environ``).
    """
    env = os.environ if env is None else env
    _check_requested(requested)
    if requested == "cpu":
        return _cpu_lease(env)
    n = count if count is not None else (cuda.device_count() if cuda.is_available() else 0)
    if n == 0:
        if want_gpu or requested.startswith("cuda"):
            raise CudaUnavailableError(_no_cuda_message(requested, want_gpu, cuda, env))
        return _cpu_lease(env)
    pinned = _pinned_index(requested, n)
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if _scheduler_pinned(env, n):
        return _cuda_lease(0 if pinned is None else pinned, cuda, visible, None, None)
    slots = [pinned] if pinned is not None else list(range(n))
    names = _slot_names(visible, n)
    directory = _allocation_lock_dir(env) if lock_dir is None else Path(lock_dir)
    index, path, handle = _take_slot(directory, slots, names, wait_s, poll_s, want_gpu)
    try:
        return _cuda_lease(index, cuda, visible, path, handle)
    except BaseException:
        handle.close()  # closing the only descriptor drops the lock
        raise


def _check_requested(requested: str) -> None:
    if not re.fullmatch(r"auto|cpu|cuda(:[0-9]+)?", requested):
        raise ValueError(f"execution.device: {requested!r} is not a device; use auto, cpu, "
                         f"cuda or cuda:N")


def _pinned_index(requested: str, n: int) -> int | None:
    """``cuda:N`` -> N (checked against the ``n`` visible devices); otherwise None."""
    if ":" not in requested:
        return None
    index = int(requested.split(":")[1])
    if index >= n:
        raise ValueError(f"execution.device: {requested!r} but only {n} CUDA device(s) are "
                         f"visible (cuda:0..cuda:{n - 1}); use cuda or auto to take any free one")
    return index


def _scheduler_pinned(env: Mapping[str, str], n: int) -> bool:
    """Exactly one device visible, named by CUDA_VISIBLE_DEVICES (a scheduler's choice): the
    job's GPU is its own. SLURM alone is not enough: one allocation may hold several GPUs,
    and its jobs then share them through slot locks."""
    visible = env.get("CUDA_VISIBLE_DEVICES")
    named = [] if visible is None else [v for v in visible.split(",") if v.strip()]
    return n == 1 and len(named) == 1


def _allocation_lock_dir(env: Mapping[str, str]) -> Path:
    """The default lock directory, one level deeper inside a SLURM allocation: slots are
    shared by the allocation's jobs, never across allocations (each has its own GPUs)."""
    base = default_lock_dir(env)
    job = env.get("SLURM_JOB_ID", "").strip()
    if not job:
        return base
    return base / ("slurm-" + re.sub(r"[^A-Za-z0-9_.-]", "_", job))


def _slot_names(visible: str | None, n: int) -> list[str]:
    """Lock-file names of the ``n`` slots: the CUDA_VISIBLE_DEVICES entries (made safe for
    a file name) when set, else the indices 0..n-1."""
    entries = [v.strip() for v in (visible or "").split(",") if v.strip()]
    return [re.sub(r"[^A-Za-z0-9_.-]", "_", entries[i]) if i < len(entries) else str(i)
            for i in range(n)]


def _take_slot(directory: Path, slots: Sequence[int], names: Sequence[str], wait_s: float,
               poll_s: float, want_gpu: bool) -> tuple[int, Path, IO[bytes]]:
    """Lock the first free slot, trying them in order, polling until ``wait_s`` has passed."""
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as err:
        raise PermissionError(f"cannot create the GPU lock directory {directory}: "
                              f"{err.strerror}. Set {LOCK_DIR_ENV} to a writable "
                              f"directory.") from err
    deadline = time.monotonic() + wait_s
    while True:
        for i in slots:
            path = directory / f"gpu{names[i]}.lock"
            handle = _try_lock(path)
            if handle is not None:
                return i, path, handle
        left = deadline - time.monotonic()
        if left <= 0:
            raise GpuSlotsBusyError(_busy_message(directory, slots, names, wait_s, want_gpu))
        time.sleep(min(poll_s, left))


def _try_lock(path: Path) -> IO[bytes] | None:
    """The open, exclusively locked ``path`` (holder's pid written in it), or None if held."""
    handle = os.fdopen(os.open(path, os.O_RDWR | os.O_CREAT, 0o600), "r+b")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        handle.close()
        if err.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            return None
        raise
    handle.truncate(0)
    handle.write(f"pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
    handle.flush()
    return handle


def _busy_message(directory: Path, slots: Sequence[int], names: Sequence[str],
                  wait_s: float, want_gpu: bool) -> str:
    held = []
    for i in slots:
        path = directory / f"gpu{names[i]}.lock"
        try:
            holder = path.read_text().strip() or "holder unknown"
        except OSError:
            holder = "holder unknown"
        held.append(f"{path} ({holder})")
    uncounted = ("" if want_gpu else " This job has resources.gpu: 0, so snakemake does not "
                 "count it against --resources gpu: set resources.gpu: 1 for jobs that use a "
                 "GPU (device auto finds one here), or execution.device: cpu.")
    return (f"all {len(slots)} GPU slot(s) stayed busy for {wait_s:g} s: " + "; ".join(held) +
            f". Likely cause: more training jobs at once than GPUs. Run snakemake with "
            f"--resources gpu={len(slots)} (the number of GPUs) so it starts at most that many "
            f"GPU jobs, or end the process(es) named above if they are left over." + uncounted)


def _no_cuda_message(requested: str, want_gpu: bool, cuda: CudaQuery,
                     env: Mapping[str, str]) -> str:
    key = ("resources.gpu > 0 (this job reserved a GPU)" if want_gpu
           else f"execution.device is {requested!r}")
    build = (f"built for CUDA {cuda.version}" if cuda.version
             else "a CPU-only build (torch.version.cuda is None)")
    visible = env.get("CUDA_VISIBLE_DEVICES")
    seen = "" if visible is None else f"; CUDA_VISIBLE_DEVICES={visible!r}"
    return (f"{key} but torch.cuda.is_available() is False (torch {torch.__version__}, "
            f"{build}{seen}). Fix: run on a GPU node (with a CUDA build of torch, see "
            f"envs/selfdistill.yaml), or train on the CPU with resources.gpu: 0 and "
            f"execution.device: cpu.")


def _cuda_lease(index: int, cuda: CudaQuery, visible: str | None, path: Path | None,
                handle: IO[bytes] | None) -> DeviceLease:
    cuda.set_device(index)
    mode = "scheduler-pinned" if path is None else "slot-locked"
    return DeviceLease(torch.device(f"cuda:{index}"), index, cuda.device_name(index), visible,
                       path, mode, handle)


def _cpu_lease(env: Mapping[str, str]) -> DeviceLease:
    name = platform.processor() or platform.machine() or "cpu"
    return DeviceLease(torch.device("cpu"), None, name, env.get("CUDA_VISIBLE_DEVICES"), None)

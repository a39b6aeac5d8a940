"""Housekeeping of the workflow's working directory when a run starts: the lock a killed
Snakemake leaves behind, and the temporary files of the writes it interrupted.

Snakemake locks a working directory with files under ``.snakemake/locks`` and removes
them when it exits; a SIGKILLed run leaves them, and every later run stops with a
LockException until ``snakemake --unlock``. The lock files do not say who wrote them, so
a run that holds the lock records itself (host, pid, process start time) under
``.snakemake/selfdistill/holders/`` (:func:`record_holder`, the workflow's ``onstart``)
and removes that record when it ends (:func:`release_holder`). At the next start,
:func:`clear_stale_lock` removes the lock only when every recorded holder ran on this host
and is gone, ran its jobs on this host (not on a cluster, where they may outlive it) and no
Snakemake process or job runs in the directory: so two runs in one directory are still
refused. Any other stale-looking lock stays, with one line saying what to do.

:func:`remove_orphan_temp_files` removes the temporary files that
:func:`selfdistill.io.atomic_path` left when a writer was killed: only files carrying its
name (``.<name>.selfdistill-<host>-<pid>-<random>.tmp``) whose writer ran on this host and
is gone, and that are older than the run's start. A user's ``.notes.tmp``, a live
writer's file (a slow fsync) and a file written on another host stay.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import psutil

from .io import temp_host, temp_writer

__all__ = ["CLUSTER_ADVICE", "UNLOCK_ADVICE", "clear_stale_lock", "record_holder", "release_holder",
           "remove_orphan_temp_files"]

UNLOCK_ADVICE = ("a killed run left a stale lock: run `snakemake --unlock` once, then the "
                 "same command again")
CLUSTER_ADVICE = ("a killed run left a stale lock, and the cluster jobs it submitted may still "
                  "run: check `squeue --me` (wait for them or scancel them), then run "
                  "`snakemake --unlock` once, then the same command again")


def _holders_dir(workdir: Path) -> Path:
    return workdir / ".snakemake" / "selfdistill" / "holders"


def _me() -> dict[str, Any]:
    me = psutil.Process()
    return {"host": socket.gethostname(), "pid": me.pid, "started": me.create_time()}


def record_holder(workdir: str | Path, local: bool = True) -> None:
    """Record this process as the holder of the lock of ``workdir`` (call it once
    Snakemake holds the lock: the workflow's ``onstart``); ``local``: its jobs run on this
    host (False: a cluster executor, whose jobs may outlive it)."""
    me = {**_me(), "local": local}
    folder = _holders_dir(Path(workdir))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{me['host']}-{me['pid']}.json").write_text(json.dumps(me))


def release_holder(workdir: str | Path) -> None:
    """Remove this process's holder record (``onsuccess``/``onerror``)."""
    me = _me()
    (_holders_dir(Path(workdir)) / f"{me['host']}-{me['pid']}.json").unlink(missing_ok=True)


def _read_holders(workdir: Path) -> list[dict[str, Any]]:
    holders = []
    for path in sorted(_holders_dir(workdir).glob("*.json")):
        try:
            holders.append({**json.loads(path.read_text()), "path": path})
        except (OSError, ValueError):
            continue  # a record cut short: its run never held the lock long
    return holders


def _alive(holder: dict[str, Any]) -> bool:
    """The recorded process still runs (same pid and the same start time: no pid reuse)."""
    try:
        return abs(psutil.Process(int(holder["pid"])).create_time() - holder["started"]) < 1
    except (psutil.Error, KeyError, TypeError, ValueError):
        return False


def _snakemake_here(workdir: Path) -> list[str]:
    """Other live processes of Snakemake in ``workdir`` (a run or one of its jobs, whose
    command names .snakemake/scripts), as 'pid: command' (this process and its parents
    excluded)."""
    mine = {os.getpid(), *(p.pid for p in psutil.Process().parents())}
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            cmd = " ".join(proc.info["cmdline"] or [])
            if proc.pid in mine or "snakemake" not in cmd:
                continue
            if Path(proc.cwd()).resolve() == workdir:
                found.append(f"{proc.pid}: {cmd[:120]}")
        except (psutil.Error, OSError):
            continue
    return found


def clear_stale_lock(workdir: str | Path) -> str | None:
    """Remove ``workdir``'s Snakemake lock if provably stale; a line for the user, or None.

    Stale means: the lock exists, every run recorded as its holder ran on this host with
    local jobs and is gone, and no Snakemake process or job runs in ``workdir``. A lock
    without a holder record, held from another host or by a run with cluster jobs is left
    in place with the advice that fits; a live holder's lock is left alone (Snakemake then
    refuses the second run itself).
    """
    wd = Path(workdir).resolve()
    locks = wd / ".snakemake" / "locks"
    holders = _read_holders(wd)
    if not locks.is_dir() or not any(locks.iterdir()):
        for h in holders:
            if not _alive(h):
                h["path"].unlink(missing_ok=True)  # a run ended without onsuccess/onerror
        return None
    host = socket.gethostname()
    if any(h.get("host") == host and _alive(h) for h in holders):
        return None
    running = _snakemake_here(wd)
    if running:
        return (f"the lock in {locks} is held while Snakemake processes still run here "
                f"({running[0]}): wait for them to end (or end them), then run the same "
                f"command again")
    away = [h for h in holders if h.get("host") != host]
    if away:
        return (f"the lock in {locks} was taken by snakemake pid {away[0].get('pid')} on host "
                f"{away[0].get('host')}: if that run is over, run `snakemake --unlock` once, "
                f"then the same command again")
    if not holders:
        return UNLOCK_ADVICE
    if not all(h.get("local", True) for h in holders):
        return CLUSTER_ADVICE
    shutil.rmtree(locks)
    for h in holders:
        h["path"].unlink(missing_ok=True)
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holders[0]["started"]))
    return (f"removed the stale lock of a killed run (snakemake pid {holders[0]['pid']} on "
            f"this host, started {when}; no Snakemake process runs in {wd})")


def remove_orphan_temp_files(roots: Iterable[str | Path], before: float) -> list[Path]:
    """Delete the temporary files of interrupted :func:`selfdistill.io.atomic_path` writes
    under ``roots``: files with its temporary name whose writer ran on this host and no
    longer runs (its pid is gone), last modified before ``before`` (the start of this run,
    epoch seconds). Every other file stays: one not of that name (a user's ``.notes.tmp``),
    one whose writer still runs, one written on another host (a cluster job's writer may
    live there), a newer one. A reused pid keeps its file, for a later start to remove.
    Returns the files removed."""
    host, removed = temp_host(), []
    for root in roots:
        for path in Path(root).rglob(".*.tmp"):
            writer = temp_writer(path)
            if writer is None or writer[0] != host or psutil.pid_exists(writer[1]):
                continue
            try:
                if path.is_file() and path.stat().st_mtime < before:
                    path.unlink()
                    removed.append(path)
            except FileNotFoundError:
                continue  # its writer renamed it meanwhile
    return removed

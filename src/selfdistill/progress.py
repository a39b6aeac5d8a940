"""Progress you can watch: one line per epoch while training, and a read-only summary of a
results tree while the grid runs (locally or on a cluster's shared filesystem).

Run directories are ``results/{dataset}/{arch}/{method}/{param}/seed{s}/gen{g}/``
(:data:`selfdistill.grid.RUN_PATTERN`). What each state is made of:

- **done**: ``run.json`` exists (it is written last, methods §7 outputs);
- **running**: ``progress.json`` (written atomically by the trainer after every epoch, see
  :func:`write_progress`), else ``history.csv``, else ``resume.pt`` was updated recently;
- **failed**: such a file exists but nothing was updated for longer than
  ``stale_factor`` x the run's mean epoch time (at least ``min_stale_s``), and no run.json;
- **waiting**: planned (``expected``) or present but nothing written yet.

Reading never writes, never locks and tolerates half-written or missing files.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from statistics import mean
from typing import Any

from .io import write_json

__all__ = ["PROGRESS_FILE", "STATES", "GridEta", "RunStatus", "duration", "epoch_line",
           "grid_eta", "main", "progress_record", "render", "summarize", "write_progress"]

PROGRESS_FILE = "progress.json"
STATES = ("done", "running", "failed", "waiting")
_IDENTITY_DEPTH = 6  # dataset / arch / method / param / seed{s} / gen{g}


# --------------------------------------------------------------------------- one epoch


def duration(seconds: float) -> str:
    """``45 s``, ``23 min``, ``2.4 h``, ``3.1 d``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _percent(value: float) -> str:
    return f"{100 * value:.1f} %"


def epoch_line(row: Mapping[str, Any], epochs: int, network: tuple[int, int] | None,
               seconds_per_epoch: float, identity: str = "") -> str:
    """One human-readable line for a finished epoch (a ``history.csv`` row, methods §2 recipe):
    ``network 3/14 · cifar10/resnet34/sd/none/seed0/gen1 · epoch 37/150 · loss 0.412 ·
    train 88.1 % · val 84.3 % · lr 0.1 · 12.4 s/epoch · ETA 23 min``. Keys missing from
    ``row`` are left out; ``network`` (k, n) and ``identity`` name the run inside a bundle."""
    parts = [] if network is None else [f"network {network[0]}/{network[1]}"]
    parts += [identity] if identity else []
    parts.append(f"epoch {row['epoch']}/{epochs}")
    shown = (("train_loss", "loss {:.3f}", float), ("train_accuracy", "train {}", _percent),
             ("val_accuracy", "val {}", _percent), ("lr", "lr {:g}", float))
    parts += [fmt.format(conv(float(row[key]))) for key, fmt, conv in shown if key in row]
    parts.append(f"{seconds_per_epoch:.1f} s/epoch")
    parts.append(f"ETA {duration(max(epochs - int(row['epoch']), 0) * seconds_per_epoch)}")
    return " · ".join(parts)


def progress_record(row: Mapping[str, Any], epochs: int, network: tuple[int, int] | None,
                    seconds_per_epoch: float | None, now: float | None = None) -> dict[str, Any]:
    """The content of ``progress.json`` after an epoch (what :func:`summarize` reads). At a
    run's start ``row`` is ``{"epoch": 0}`` and ``seconds_per_epoch`` None: both unknown
    values are written as null."""
    k, n = network if network is not None else (1, 1)
    return {"epoch": int(row["epoch"]), "epochs": int(epochs), "network": k, "networks": n,
            "seconds_per_epoch": None if seconds_per_epoch is None else float(seconds_per_epoch),
            "val_accuracy": float(row["val_accuracy"]) if "val_accuracy" in row else None,
            "updated_unix": round(time.time() if now is None else now, 3)}


def write_progress(run_dir: str | Path, row: Mapping[str, Any], epochs: int,
                   network: tuple[int, int] | None, seconds_per_epoch: float | None) -> None:
    """Replace ``<run_dir>/progress.json`` atomically (readers never see half a file)."""
    write_json(Path(run_dir) / PROGRESS_FILE,
               progress_record(row, epochs, network, seconds_per_epoch))


# --------------------------------------------------------------------------- a results tree


@dataclass(frozen=True)
class RunStatus:
    """What the files of one run directory say about it (all fields but path, identity and
    state may be None when the files do not tell)."""

    path: Path
    identity: str  # "cifar10/resnet34/sd/none/seed0/gen1"
    state: str  # one of STATES
    epoch: int | None = None  # epochs finished
    epochs: int | None = None  # epochs planned
    val_accuracy: float | None = None  # of the last finished epoch
    seconds_per_epoch: float | None = None
    updated_unix: float | None = None  # last write seen
    network_s: float | None = None  # done: the run's wall time

    @property
    def group(self) -> str:
        """``dataset/arch``: runs whose times stand for each other."""
        return "/".join(self.identity.split("/")[:2])

    @property
    def eta_s(self) -> float | None:
        """Seconds left of a running run (None when its epochs or epoch time are unknown)."""
        if self.state != "running" or None in (self.epoch, self.epochs, self.seconds_per_epoch):
            return None
        return max(self.epochs - self.epoch, 0) * self.seconds_per_epoch  # type: ignore[operator]


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        with open(path) as fh:
            obj = json.load(fh)
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def _history(path: Path) -> list[dict[str, float]]:
    """The rows of ``history.csv`` whose numbers parse (a truncated last line is dropped)."""
    try:
        with open(path, newline="") as fh:
            raw = list(csv.DictReader(fh))
    except (OSError, csv.Error, UnicodeDecodeError):
        return []
    rows = []
    for r in raw:
        try:
            row = {k: float(r[k]) for k in ("epoch", "val_accuracy", "time_s")}
            if r.get("epochs"):
                row["epochs"] = float(r["epochs"])
        except (KeyError, TypeError, ValueError):
            continue
        rows.append(row)
    return rows


def _done(run: Path, identity: str) -> RunStatus:
    record = _read_json(run / "run.json") or {}
    seconds = record.get("wall_time_s")
    if not isinstance(seconds, (int, float)):
        times = [r["time_s"] for r in _history(run / "history.csv")]
        seconds = sum(times) if times else None
    return RunStatus(run, identity, "done", network_s=seconds,
                     updated_unix=_mtime(run / "run.json"))


def _in_progress(run: Path, identity: str) -> RunStatus | None:
    """A started run from progress.json, else history.csv, else resume.pt (state left
    ``running``; :func:`summarize` marks it failed when stale). None: nothing started."""
    progress = _read_json(run / PROGRESS_FILE)
    if progress is not None and {"epoch", "epochs"} <= progress.keys():
        updated = max(filter(None, (progress.get("updated_unix"),
                                    _mtime(run / PROGRESS_FILE))), default=None)
        return RunStatus(run, identity, "running", int(progress["epoch"]),
                         int(progress["epochs"]), progress.get("val_accuracy"),
                         progress.get("seconds_per_epoch"), updated)
    rows = _history(run / "history.csv")
    if rows:
        last = rows[-1]
        epochs = int(last["epochs"]) if "epochs" in last else None
        return RunStatus(run, identity, "running", int(last["epoch"]), epochs,
                         last["val_accuracy"], mean(r["time_s"] for r in rows),
                         _mtime(run / "history.csv"))
    updated = _mtime(run / "resume.pt")
    return None if updated is None else RunStatus(run, identity, "running", updated_unix=updated)


def _status(run: Path, identity: str, now: float, stale_factor: float,
            min_stale_s: float) -> RunStatus:
    if (run / "run.json").exists():
        return _done(run, identity)
    seen = _in_progress(run, identity)
    if seen is None:
        return RunStatus(run, identity, "waiting")
    limit = max(stale_factor * (seen.seconds_per_epoch or 0.0), min_stale_s)
    if seen.updated_unix is not None and now - seen.updated_unix > limit:
        return replace(seen, state="failed")
    return seen


def _identity(run: Path) -> str:
    return "/".join(run.parts[-_IDENTITY_DEPTH:])


def summarize(results: Path, expected: list[Path] | None = None, *, now: float | None = None,
              stale_factor: float = 3.0, min_stale_s: float = 120.0) -> list[RunStatus]:
    """The state of every run directory under ``results`` and of every ``expected`` one
    (planned run directories; those absent are waiting), sorted by identity."""
    now = time.time() if now is None else now
    runs = {_identity(Path(p)): Path(p) for p in expected or []}
    runs.update((_identity(p), p) for p in Path(results).glob("*/*/*/*/seed*/gen*") if p.is_dir())
    return [_status(runs[i], i, now, stale_factor, min_stale_s) for i in sorted(runs)]


# --------------------------------------------------------------------------- the grid


@dataclass(frozen=True)
class GridEta:
    """Seconds until the runs known to need time are done, and how many runs had no
    time estimate (waiting runs of a dataset/arch with no done or timed running run)."""

    seconds: float
    untimed: int
    concurrency: int


def _network_seconds(statuses: Sequence[RunStatus]) -> dict[str, float]:
    """Per dataset/arch: mean wall time of its done runs, else epochs x epoch time of its
    running runs."""
    done, running = defaultdict(list), defaultdict(list)
    for s in statuses:
        if s.state == "done" and s.network_s is not None:
            done[s.group].append(s.network_s)
        elif s.state == "running" and s.epochs and s.seconds_per_epoch:
            running[s.group].append(s.epochs * s.seconds_per_epoch)
    return {g: mean(done.get(g) or running[g]) for g in {*done, *running}}


def grid_eta(statuses: Sequence[RunStatus], concurrency: int | None = None) -> GridEta:
    """Remaining epochs of running runs x their epoch time, plus waiting runs x the mean
    network time of their dataset/arch, over the number of runs going at once
    (``concurrency``; default: the running runs). Failed runs are not counted."""
    per_network = _network_seconds(statuses)
    total, untimed = 0.0, 0
    for s in statuses:
        if s.state not in ("running", "waiting"):
            continue
        left = s.eta_s if s.state == "running" else per_network.get(s.group)
        if left is None:
            untimed += 1
        else:
            total += left
    n = concurrency or max(sum(s.state == "running" for s in statuses), 1)
    return GridEta(total / n, untimed, n)


def _running_line(s: RunStatus) -> str:
    parts = [s.identity, f"epoch {s.epoch if s.epoch is not None else '?'}/{s.epochs or '?'}"]
    if s.val_accuracy is not None:
        parts.append(f"val {_percent(s.val_accuracy)}")
    if s.seconds_per_epoch is not None:
        parts.append(f"{s.seconds_per_epoch:.1f} s/epoch")
    parts.append("ETA " + (duration(s.eta_s) if s.eta_s is not None else "?"))
    return "  " + " · ".join(parts)


def _failed_line(s: RunStatus, now: float) -> str:
    at = "" if s.epoch is None else f" at epoch {s.epoch}/{s.epochs or '?'}"
    quiet = "" if s.updated_unix is None else f", no update for {duration(now - s.updated_unix)}"
    return f"  {s.identity}{at}{quiet} ({s.path})"


def render(statuses: Sequence[RunStatus], now: float | None = None,
           concurrency: int | None = None) -> str:
    """Counts per state, the grid's ETA, then the running, failed and waiting runs."""
    now = time.time() if now is None else now
    counts = Counter(s.state for s in statuses)
    lines = [" · ".join(f"{counts[k]} {k}" for k in STATES) + f" ({len(statuses)} runs)"]
    eta = grid_eta(statuses, concurrency)
    note = "" if not eta.untimed else f"; {eta.untimed} run(s) without a time estimate yet"
    lines.append(f"ETA {duration(eta.seconds)} at {eta.concurrency} run(s) at once{note}")
    lines += _section("running", [_running_line(s) for s in statuses if s.state == "running"])
    lines += _section("failed (stale, no run.json)",
                      [_failed_line(s, now) for s in statuses if s.state == "failed"])
    waiting = Counter(s.group for s in statuses if s.state == "waiting")
    lines += _section("waiting", [f"  {g}: {n}" for g, n in sorted(waiting.items())])
    return "\n".join(lines)


def _section(title: str, body: Iterable[str]) -> list[str]:
    body = list(body)
    return [f"{title}:", *body] if body else []


# --------------------------------------------------------------------------- command line


PLANNED = ".planned_runs"  # written by the workflow at the start of every run (common.smk)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(allow_abbrev=False, prog="selfdistill progress",
                                description="Summarise a results tree: done, running, failed "
                                            "and waiting runs and the grid's ETA (read only).")
    p.add_argument("results", nargs="?", default="results", help="results directory")
    p.add_argument("--watch", type=float, default=None, metavar="SECONDS",
                   help="redraw every SECONDS until interrupted")
    p.add_argument("--jobs", type=int, default=None,
                   help="runs going at once for the ETA (default: the running runs)")
    p.add_argument("--expected", default=None, metavar="FILE",
                   help="planned run directories, one per line (absent ones are waiting); "
                        "default: <results>/.planned_runs, written by each snakemake run")
    return p


def _expected(path: str | None) -> list[Path] | None:
    if path is None:
        return None
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as err:
        raise SystemExit(f"selfdistill progress: --expected {path}: {err.strerror}") from err
    return [Path(line.strip()) for line in lines if line.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m selfdistill progress [results] [--watch SECONDS]``."""
    args = _parser().parse_args(argv)
    planned = Path(args.results) / PLANNED
    if args.expected is None and planned.is_file():
        args.expected = str(planned)
    expected = _expected(args.expected)
    if not Path(args.results).is_dir():
        print(f"selfdistill progress: no results directory {args.results!r}", file=sys.stderr)
        return 1
    try:
        while True:
            text = render(summarize(Path(args.results), expected), concurrency=args.jobs)
            clear = "\033[2J\033[H" if args.watch and sys.stdout.isatty() else ""
            print(clear + text, flush=True)
            if not args.watch:
                return 0
            time.sleep(args.watch)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())

"""Working-directory housekeeping at the start of a run: a stale Snakemake lock is removed
only when provably stale (its recorded holder ran on this host and is gone, no Snakemake
process runs there), never a live one; orphan temp files older than the run's start go."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from selfdistill.workdir import (
    CLUSTER_ADVICE,
    UNLOCK_ADVICE,
    clear_stale_lock,
    record_holder,
    release_holder,
    remove_orphan_temp_files,
)

pytestmark = pytest.mark.reliability


def locked(workdir: Path) -> Path:
    """A lock as Snakemake writes it."""
    locks = workdir / ".snakemake" / "locks"
    locks.mkdir(parents=True)
    (locks / "0.output.lock").write_text(f"{workdir}/results/metrics.csv\n")
    return locks


def holder(workdir: Path, pid: int, started: float, host: str | None = None,
           local: bool = True) -> Path:
    folder = workdir / ".snakemake" / "selfdistill" / "holders"
    folder.mkdir(parents=True, exist_ok=True)
    record = {"host": host or socket.gethostname(), "pid": pid, "started": started,
              "local": local}
    path = folder / f"{record['host']}-{pid}.json"
    path.write_text(json.dumps(record))
    return path


@pytest.fixture
def sleeper(tmp_path):
    """A live process whose command line names snakemake, running in tmp_path."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "snakemake"],
                            cwd=tmp_path)
    yield proc
    proc.kill()
    proc.wait()


def dead_pid() -> tuple[int, float]:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    started = psutil.Process(proc.pid).create_time()
    proc.wait()
    return proc.pid, started


def test_no_lock_nothing_to_do(tmp_path):
    assert clear_stale_lock(tmp_path) is None


def test_lock_of_a_killed_holder_here_is_removed(tmp_path):
    locks = locked(tmp_path)
    record = holder(tmp_path, *dead_pid())
    note = clear_stale_lock(tmp_path)
    assert note.startswith("removed the stale lock of a killed run")
    assert not locks.exists() and not record.exists()


def test_lock_of_a_live_holder_stays(tmp_path, sleeper):
    locks = locked(tmp_path)
    holder(tmp_path, sleeper.pid, psutil.Process(sleeper.pid).create_time())
    assert clear_stale_lock(tmp_path) is None
    assert locks.exists()


def test_recorded_pid_reused_by_another_process_counts_as_gone(tmp_path):
    locks = locked(tmp_path)
    holder(tmp_path, os.getpid(), psutil.Process().create_time() - 1000)
    assert clear_stale_lock(tmp_path).startswith("removed the stale lock")
    assert not locks.exists()


def test_lock_without_a_record_stays_with_the_unlock_advice(tmp_path):
    locks = locked(tmp_path)
    assert clear_stale_lock(tmp_path) == UNLOCK_ADVICE
    assert "`snakemake --unlock`" in UNLOCK_ADVICE and locks.exists()


def test_lock_taken_on_another_host_stays_and_names_it(tmp_path):
    locks = locked(tmp_path)
    holder(tmp_path, 4242, time.time(), host="login-node-7")
    note = clear_stale_lock(tmp_path)
    assert "pid 4242 on host login-node-7" in note and "`snakemake --unlock`" in note
    assert locks.exists()


def test_lock_of_a_killed_run_with_cluster_jobs_stays_with_the_squeue_advice(tmp_path):
    """Its SLURM jobs may outlive it: removing the lock would let a rerun submit them twice."""
    locks = locked(tmp_path)
    holder(tmp_path, *dead_pid(), local=False)
    assert clear_stale_lock(tmp_path) == CLUSTER_ADVICE
    assert "squeue --me" in CLUSTER_ADVICE and "`snakemake --unlock`" in CLUSTER_ADVICE
    assert locks.exists()


def test_lock_stays_while_a_snakemake_process_runs_here(tmp_path, sleeper):
    """A dead recorded holder, but a job of the killed run still runs in the directory."""
    locks = locked(tmp_path)
    holder(tmp_path, *dead_pid())
    deadline = time.time() + 10
    while psutil.Process(sleeper.pid).cmdline()[-1:] != ["snakemake"] and time.time() < deadline:
        time.sleep(0.05)
    note = clear_stale_lock(tmp_path)
    assert note and f"{sleeper.pid}:" in note and "wait for them to end" in note
    assert locks.exists()


def test_record_and_release_holder(tmp_path):
    record_holder(tmp_path, local=False)
    records = list((tmp_path / ".snakemake" / "selfdistill" / "holders").glob("*.json"))
    assert [json.loads(p.read_text())["pid"] for p in records] == [os.getpid()]
    assert json.loads(records[0].read_text())["local"] is False
    release_holder(tmp_path)
    assert not any(p.exists() for p in records)


def test_orphan_temp_files_older_than_the_start_go_newer_stay(tmp_path):
    start = time.time()
    old = tmp_path / "results" / ".reliability.csv.a1b2c3d4.tmp"
    deep = tmp_path / "figures" / "sub" / ".e1.png.x9y8z7w6.tmp"
    live = tmp_path / "results" / "m" / ".model.pt.q1w2e3r4.tmp"
    kept = [tmp_path / "results" / "metrics.csv", tmp_path / "results" / "not.tmp"]
    for path in (old, deep, live, *kept):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    for path in (old, deep, *kept):
        os.utime(path, (start - 60, start - 60))
    os.utime(live, (start + 1, start + 1))  # written after this run started
    removed = remove_orphan_temp_files([tmp_path / "results", tmp_path / "figures"], start)
    assert sorted(removed) == sorted([old, deep])
    assert live.exists() and all(p.exists() for p in kept)

"""Working-directory housekeeping at the start of a run: a stale Snakemake lock is removed
only when provably stale (its recorded holder ran on this host and is gone, no Snakemake
process runs there), never a live one; the temp files of killed atomic writes older than
the run's start go, and nothing else: not a user's .notes.tmp, not a live writer's file."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from selfdistill.io import atomic_path, temp_host
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


def temp_name(target: Path, pid: int, host: str | None = None) -> Path:
    """The temporary name atomic_path gives ``target`` in a writer ``pid`` on ``host``."""
    return target.with_name(f".{target.name}.selfdistill-{host or temp_host()}-{pid}-a1b2c3d4.tmp")


def test_orphan_temp_files_older_than_the_start_go_newer_stay(tmp_path):
    start, (gone, _) = time.time(), dead_pid()
    old = temp_name(tmp_path / "results" / "reliability.csv", gone)
    deep = temp_name(tmp_path / "figures" / "sub" / "e1.png", gone)
    live = temp_name(tmp_path / "results" / "m" / "model.pt", gone)
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


def test_a_users_tmp_files_stay(tmp_path):
    """Only the project's own temp names are candidates: a user's dot-files ending in .tmp
    (notes, an editor's swap file) stay however old they are."""
    results = tmp_path / "results"
    results.mkdir()
    mine = [results / ".notes.tmp", results / ".metrics.csv.a1b2c3d4.tmp",
            results / ".x.selfdistill-tmp"]
    for path in mine:
        path.write_text("mine")
        os.utime(path, (time.time() - 86400, time.time() - 86400))
    assert remove_orphan_temp_files([results], time.time()) == []
    assert all(p.read_text() == "mine" for p in mine)


WRITER = """
import sys
from selfdistill.io import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    tmp.write_text("whole")
    print(tmp, flush=True)
    sys.stdin.readline()  # the slow part of the write (fsync on a busy file system)
print("done", flush=True)
"""


def test_a_live_writers_temp_file_stays_and_the_write_completes(tmp_path):
    """A writer still inside atomic_path when a run starts (its temp file older than the
    start): cleanup leaves the file, and the write then renames it into place."""
    target = tmp_path / "results" / "m" / "preds.npz"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        tmp = Path(writer.stdout.readline().strip())
        time.sleep(0.05)  # the run starts after the temp file was last written
        assert tmp.is_file() and tmp.stat().st_mtime < time.time()
        assert remove_orphan_temp_files([tmp_path / "results"], time.time()) == []
        out, _ = writer.communicate("go\n", timeout=60)
    finally:
        writer.kill()
    assert writer.returncode == 0 and out.strip() == "done"
    assert target.read_text() == "whole" and not tmp.exists()


def test_a_killed_writers_temp_file_names_it_and_goes(tmp_path):
    """SIGKILL inside atomic_path leaves the temp file; its name carries the writer's host
    and pid, so the next start sees the writer gone and removes it."""
    target = tmp_path / "results" / "history.csv"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    tmp = Path(writer.stdout.readline().strip())
    writer.kill()
    writer.wait()
    assert tmp.is_file() and not target.exists()
    assert tmp.name.startswith(f".history.csv.selfdistill-{temp_host()}-{writer.pid}-")
    time.sleep(0.05)
    assert remove_orphan_temp_files([tmp_path / "results"], time.time()) == [tmp]
    assert not tmp.exists()


def test_a_temp_file_written_on_another_host_stays(tmp_path):
    """A cluster job on another node may still be writing it: its pid means nothing here."""
    gone, _ = dead_pid()
    other = temp_name(tmp_path / "model.pt", gone, host="node-17.cluster")
    other.write_text("x")
    os.utime(other, (time.time() - 3600, time.time() - 3600))
    assert remove_orphan_temp_files([tmp_path], time.time()) == []
    assert other.exists()


def test_a_write_of_this_process_in_flight_keeps_its_file(tmp_path):
    """The cleanup runs in the Snakemake process itself (onstart): a write of this very
    process in flight is a live writer too."""
    target = tmp_path / "a.csv"
    with atomic_path(target) as tmp:
        tmp.write_text("x")
        time.sleep(0.05)
        assert remove_orphan_temp_files([tmp_path], time.time()) == []
    assert target.read_text() == "x"

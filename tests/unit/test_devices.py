"""Device choice: one GPU slot per job by flock across processes, scheduler-given devices
respected, loud errors without CUDA (selfdistill.devices). CPU only: CUDA is faked."""

import multiprocessing as mp
import os
import signal
import threading
import time
from pathlib import Path

import pytest
import torch

from selfdistill.devices import (
    CudaQuery,
    CudaUnavailableError,
    GpuSlotsBusyError,
    acquire_device,
    default_lock_dir,
)

FORK = mp.get_context("fork")  # children inherit the fake; each opens its own lock file
NO_SCHEDULER: dict[str, str] = {}  # an environment without SLURM or CUDA_VISIBLE_DEVICES


def fake_cuda(n: int, selected: list[int] | None = None) -> CudaQuery:
    """A machine with ``n`` CUDA devices; ``set_device`` calls are appended to ``selected``."""
    sink = [] if selected is None else selected
    return CudaQuery(lambda: n > 0, lambda: n, sink.append, lambda i: f"Fake GPU {i}", "12.6")


def _hold(lock_dir: Path, n: int, out: mp.Queue) -> None:
    lease = acquire_device("auto", True, lock_dir, count=n, wait_s=5, poll_s=0.05,
                           cuda=fake_cuda(n), env=NO_SCHEDULER)
    out.put((os.getpid(), lease.index, str(lease.slot_lock)))
    time.sleep(120)  # holds the slot until the test kills it


def start_holders(lock_dir: Path, k: int, n: int = 4):
    """``k`` processes each holding one slot; returns them and pid -> (index, lock file)."""
    out = FORK.Queue()
    procs = [FORK.Process(target=_hold, args=(lock_dir, n, out), daemon=True) for _ in range(k)]
    for p in procs:
        p.start()
    got = [out.get(timeout=30) for _ in procs]
    return procs, {pid: (index, lock) for pid, index, lock in got}


def stop(procs) -> None:
    for p in procs:
        p.kill()
        p.join(10)


def test_four_processes_get_four_slots_and_a_fifth_waits_then_fails(tmp_path):
    procs, held = start_holders(tmp_path, 4)
    try:
        assert sorted(index for index, _ in held.values()) == [0, 1, 2, 3]
        assert {lock for _, lock in held.values()} == {str(tmp_path / f"gpu{i}.lock")
                                                        for i in range(4)}
        t0 = time.monotonic()
        with pytest.raises(GpuSlotsBusyError) as err:
            acquire_device("cuda", True, tmp_path, count=4, wait_s=0.6, poll_s=0.1,
                           cuda=fake_cuda(4), env=NO_SCHEDULER)
        assert time.monotonic() - t0 >= 0.6
        msg = str(err.value)
        assert "--resources gpu=4" in msg
        for pid, (_, lock) in held.items():
            assert lock in msg and f"pid {pid}" in msg
    finally:
        stop(procs)


def test_slot_of_a_sigkilled_holder_goes_to_a_waiting_job(tmp_path):
    procs, held = start_holders(tmp_path, 4)
    try:
        victim = next(pid for pid, (index, _) in held.items() if index == 2)
        killer = threading.Timer(0.5, os.kill, (victim, signal.SIGKILL))
        killer.start()
        t0 = time.monotonic()
        lease = acquire_device("auto", True, tmp_path, count=4, wait_s=20, poll_s=0.05,
                               cuda=fake_cuda(4), env=NO_SCHEDULER)
        assert time.monotonic() - t0 >= 0.5
        assert lease.index == 2 and lease.device == torch.device("cuda:2")
        assert lease.slot_lock == tmp_path / "gpu2.lock"
        lease.release()
    finally:
        stop(procs)


def test_released_slot_is_free_and_cuda_set_device_is_called(tmp_path):
    selected: list[int] = []
    cuda = fake_cuda(2, selected)
    first = acquire_device("auto", True, tmp_path, count=2, cuda=cuda, env=NO_SCHEDULER)
    with acquire_device("auto", True, tmp_path, count=2, cuda=cuda, env=NO_SCHEDULER) as second:
        assert (first.index, second.index) == (0, 1)
        first.release()
        first.release()  # idempotent
        third = acquire_device("auto", True, tmp_path, count=2, wait_s=0, cuda=cuda,
                               env=NO_SCHEDULER)
        assert third.index == 0
        third.release()
    assert selected == [0, 1, 0]
    assert first.record() == {"device": "cuda:0", "mode": "slot-locked", "index": 0,
                              "name": "Fake GPU 0", "visible_devices": None,
                              "slot_lock": str(tmp_path / "gpu0.lock")}


@pytest.mark.parametrize("env", [{"SLURM_JOB_ID": "77", "CUDA_VISIBLE_DEVICES": "0"},
                                 {"CUDA_VISIBLE_DEVICES": "3"}])
def test_scheduler_given_device_is_used_without_a_lock(tmp_path, env):
    procs, _ = start_holders(tmp_path, 2, n=2)  # every slot of this machine is held
    try:
        lease = acquire_device("auto", True, tmp_path, count=1, wait_s=0, cuda=fake_cuda(1),
                               env=env)
        assert lease.device == torch.device("cuda:0") and lease.slot_lock is None
        assert lease.record()["visible_devices"] == env["CUDA_VISIBLE_DEVICES"]
        assert lease.record()["mode"] == "scheduler-pinned"
    finally:
        stop(procs)


def _lease_in_allocation(out: mp.Queue) -> None:
    """One job inside ``salloc --gpus=4``: SLURM set, four devices visible."""
    env = {"SLURM_JOB_ID": "77", "CUDA_VISIBLE_DEVICES": "0,1,2,3"}
    lease = acquire_device("auto", True, None, wait_s=5, poll_s=0.05, cuda=fake_cuda(4),
                           env=env | {"SELFDISTILL_GPU_LOCK_DIR": os.environ["LOCKS"]})
    out.put((str(lease.device), lease.record()["mode"], str(lease.slot_lock)))
    time.sleep(120)


def test_jobs_of_one_slurm_allocation_with_four_gpus_get_four_devices(tmp_path, monkeypatch):
    """``salloc --gpus=4`` then ``snakemake --resources gpu=4``: SLURM_JOB_ID alone is not
    pinning; the four jobs take four slots (cuda:0..3) under the allocation's lock level,
    and a fifth waits."""
    monkeypatch.setenv("LOCKS", str(tmp_path))
    out = FORK.Queue()
    procs = [FORK.Process(target=_lease_in_allocation, args=(out,), daemon=True)
             for _ in range(4)]
    for p in procs:
        p.start()
    try:
        got = [out.get(timeout=30) for _ in procs]
        assert sorted(device for device, _, _ in got) == [f"cuda:{i}" for i in range(4)]
        assert {mode for _, mode, _ in got} == {"slot-locked"}
        assert {lock for _, _, lock in got} == {str(tmp_path / "slurm-77" / f"gpu{i}.lock")
                                                for i in range(4)}
        env = {"SLURM_JOB_ID": "77", "CUDA_VISIBLE_DEVICES": "0,1,2,3",
               "SELFDISTILL_GPU_LOCK_DIR": str(tmp_path)}
        with pytest.raises(GpuSlotsBusyError):
            acquire_device("auto", True, None, wait_s=0, cuda=fake_cuda(4), env=env)
        other = acquire_device("auto", True, None, wait_s=0, cuda=fake_cuda(4),
                               env=env | {"SLURM_JOB_ID": "78"})  # another allocation
        assert other.index == 0 and other.slot_lock == tmp_path / "slurm-78" / "gpu0.lock"
        other.release()
    finally:
        stop(procs)


def test_several_visible_devices_outside_slurm_are_shared_by_their_names(tmp_path):
    env = {"CUDA_VISIBLE_DEVICES": "4,GPU-ab/cd"}
    cuda = fake_cuda(2)
    a = acquire_device("auto", True, tmp_path, wait_s=0, cuda=cuda, env=env)
    b = acquire_device("auto", True, tmp_path, wait_s=0, cuda=cuda, env=env)
    assert (a.index, b.index) == (0, 1)
    assert (a.slot_lock, b.slot_lock) == (tmp_path / "gpu4.lock", tmp_path / "gpuGPU-ab_cd.lock")
    with pytest.raises(GpuSlotsBusyError):
        acquire_device("auto", True, tmp_path, wait_s=0, cuda=cuda, env=env)
    a.release()
    b.release()


def test_explicit_index_locks_that_slot_and_is_checked(tmp_path):
    lease = acquire_device("cuda:3", False, tmp_path, count=4, cuda=fake_cuda(4),
                           env=NO_SCHEDULER)
    assert lease.index == 3 and lease.slot_lock == tmp_path / "gpu3.lock"
    with pytest.raises(GpuSlotsBusyError):
        acquire_device("cuda:3", False, tmp_path, count=4, wait_s=0, cuda=fake_cuda(4),
                       env=NO_SCHEDULER)
    lease.release()
    with pytest.raises(ValueError, match=r"execution\.device: 'cuda:4'.*cuda:0\.\.cuda:3"):
        acquire_device("cuda:4", False, tmp_path, count=4, cuda=fake_cuda(4), env=NO_SCHEDULER)
    with pytest.raises(ValueError, match="execution.device: 'gpu'"):
        acquire_device("gpu", False, tmp_path, cuda=fake_cuda(4), env=NO_SCHEDULER)


def test_auto_without_a_gpu_job_waits_for_a_slot_with_a_message_about_resources(tmp_path):
    held = acquire_device("auto", True, tmp_path, count=1, cuda=fake_cuda(1), env=NO_SCHEDULER)
    with pytest.raises(GpuSlotsBusyError, match=r"resources\.gpu: 0"):
        acquire_device("auto", False, tmp_path, count=1, wait_s=0, cuda=fake_cuda(1),
                       env=NO_SCHEDULER)
    held.release()


def test_gpu_request_without_cuda_names_the_key_and_the_fix(tmp_path):
    with pytest.raises(CudaUnavailableError) as err:
        acquire_device("auto", True, tmp_path, cuda=fake_cuda(0), env=NO_SCHEDULER)
    msg = str(err.value)
    assert "resources.gpu > 0" in msg and "torch.cuda.is_available() is False" in msg
    assert "CUDA 12.6" in msg and torch.__version__ in msg
    assert "run on a GPU node" in msg and "execution.device: cpu" in msg
    cpu_build = CudaQuery(lambda: False, lambda: 0, print, str, None)
    with pytest.raises(CudaUnavailableError) as err:
        acquire_device("cuda", False, tmp_path, cuda=cpu_build,
                       env={"CUDA_VISIBLE_DEVICES": ""})
    msg = str(err.value)
    assert "execution.device is 'cuda'" in msg and "CPU-only build" in msg
    assert "CUDA_VISIBLE_DEVICES=''" in msg
    assert not list(tmp_path.iterdir())  # failed before any lock or other work


def test_cpu_when_no_gpu_is_wanted_or_cpu_is_asked(tmp_path):
    lease = acquire_device("auto", False, tmp_path, cuda=fake_cuda(0), env=NO_SCHEDULER)
    assert lease.device == torch.device("cpu") and lease.index is None
    assert lease.record()["device"] == "cpu" and lease.record()["slot_lock"] is None
    assert lease.record()["mode"] == "cpu"
    explicit = acquire_device("cpu", True, tmp_path, count=4, cuda=fake_cuda(4),
                              env=NO_SCHEDULER)
    assert explicit.device == torch.device("cpu")
    assert not list(tmp_path.iterdir())


def test_default_lock_dir_order(tmp_path):
    assert default_lock_dir({"SELFDISTILL_GPU_LOCK_DIR": "/x",
                             "XDG_RUNTIME_DIR": str(tmp_path)}) == Path("/x")
    assert default_lock_dir({"XDG_RUNTIME_DIR": str(tmp_path)}) == \
        tmp_path / "selfdistill-gpu-locks"
    assert default_lock_dir({"XDG_RUNTIME_DIR": str(tmp_path / "missing")}) == \
        Path(f"/tmp/selfdistill-gpu-locks-{os.getuid()}")

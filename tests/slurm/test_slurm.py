"""SLURM: profiles/slurm on a real single-node cluster started here (ci/slurm_start.sh).

Training jobs go through sbatch, everything else runs on the submit host, and the tidy
metrics equal a local run value for value; a GPU request reaches sbatch; a SIGTERM'd
training job leaves a resume checkpoint that its retry (more memory and time) continues.
Needs root and the Debian packages slurm-wlm and munge; skipped without them.
"""

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import yaml

from ..workflow.test_dag import job_counts

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "tests" / "data" / "tiny.yaml"
CONFIGS = ["--configfile", "config/config.yaml", "tiny.yaml"]
HARD_LIMIT_S = 600  # timeout -s KILL for one snakemake run: a stuck status loop ends here
# Test-speed and test-cluster settings only; everything else comes from profiles/slurm.
# squeue status checks: this cluster has no slurmdbd (sacct); MinJobAge >= 3 x init seconds.
FAST = ["--slurm-init-seconds-before-status-checks", "1", "--slurm-status-command", "squeue",
        "--slurm-no-account", "--slurm-keep-successful-logs"]
METRIC_KEYS = ["dataset", "arch", "method", "param", "seed", "gen", "split"]
SUBMITTED = re.compile(r"has been submitted with SLURM jobid (\d+) \(log: (\S+)\)")
BINARIES = ["sbatch", "squeue", "scontrol", "scancel", "srun", "slurmctld", "slurmd",
            "munged", "mungekey"]
SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])


def _missing() -> list[str]:
    return [b for b in BINARIES if shutil.which(b, path=SBIN_PATH) is None]


pytestmark = [
    pytest.mark.slurm,
    pytest.mark.slow,
    pytest.mark.skipif(bool(_missing()), reason=f"SLURM binaries missing: {_missing()} "
                       "(apt-get install -y slurm-wlm munge)"),
    pytest.mark.skipif(os.geteuid() != 0, reason="starting slurmctld/slurmd needs root"),
]


def is_training(rule: str) -> bool:
    return rule == "train" or rule.startswith(("train_bundle_", "train_chain_",
                                                "train_baselines_"))


def copy_workflow(dest: Path, *extra: Path) -> Path:
    """What a user's clone holds for running: Snakefile, workflow/, config/, profiles/, envs/."""
    dest.mkdir(parents=True)
    shutil.copy2(REPO / "Snakefile", dest)
    for name in ("workflow", "config", "profiles", "envs"):
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    for f in (TINY, *extra):
        shutil.copy2(f, dest)
    return dest


def start(cmd: list[str], cwd: Path, log: str) -> subprocess.Popen:
    """Start cmd under `timeout -s KILL` in its own process group, output to cwd/log."""
    env = {**os.environ, "PYTHONHASHSEED": "0", "PATH": SBIN_PATH}
    with open(cwd / log, "w") as out:
        return subprocess.Popen(["timeout", "-s", "KILL", str(HARD_LIMIT_S), *cmd], cwd=cwd,
                                stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)


def finish(proc: subprocess.Popen, cwd: Path, log: str) -> tuple[int, str]:
    """Wait for a started command (its whole group is killed if the wait overruns)."""
    try:
        proc.wait(timeout=HARD_LIMIT_S + 30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode, (cwd / log).read_text()


def run(cmd: list[str], cwd: Path, log: str) -> tuple[int, str]:
    return finish(start(cmd, cwd, log), cwd, log)


def ok(rc: int, text: str, what: str) -> str:
    killed = ", killed at the hard limit" if rc in (124, 137) else ""
    assert rc == 0, f"{what} failed (exit {rc}{killed}):\n{text[-6000:]}"
    return text


def submissions(text: str) -> dict[str, str]:
    """SLURM job id -> rule name, from the plugin's 'has been submitted' lines."""
    subs = {}
    for jobid, log in SUBMITTED.findall(text):
        m = re.search(r"slurm_logs/rule_([A-Za-z0-9_]+)/", log)
        assert m, f"unexpected SLURM log path {log}"
        subs[jobid] = m.group(1)
    return subs


def scontrol(jobid: str) -> str:
    return subprocess.run(["scontrol", "-o", "show", "job", jobid], capture_output=True,
                          text=True, check=True).stdout


def sbatch_calls(text: str) -> list[str]:
    """The plugin's 'sbatch call:' debug lines (needs --verbose)."""
    return [line for line in text.splitlines() if line.startswith("sbatch call: ")]


@pytest.fixture(scope="module")
def slurm_cluster():
    """One cluster (with a fake GPU) for this module; daemons stopped by pid afterwards.

    Its state lives outside pytest's tmp_path: munged wants every parent of its socket
    world-executable, and pytest's base temporary directory is private (0700).
    """
    state = Path(tempfile.mkdtemp(prefix="selfdistill-slurm-"))
    state.chmod(0o755)
    env = {**os.environ, "S": str(state), "PATH": SBIN_PATH}
    try:
        start = subprocess.run(["bash", str(REPO / "ci" / "slurm_start.sh"), "--gpu"], env=env,
                               capture_output=True, text=True, timeout=120)
        if start.returncode == 3:
            pytest.skip(f"a real SLURM config is installed: {start.stderr.strip()}")
        assert start.returncode == 0, f"slurm_start.sh failed:\n{start.stdout}\n{start.stderr}"
        yield state
    finally:
        ids = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True,
                             env=env).stdout.split()
        if ids:
            subprocess.run(["scancel", *ids], env=env)
        subprocess.run(["bash", str(REPO / "ci" / "slurm_stop.sh")], env=env, timeout=120)
        shutil.rmtree(state, ignore_errors=True)


def test_profile_submits_training_and_matches_local_run(slurm_cluster, tmp_path):
    local = copy_workflow(tmp_path / "local")
    wf = copy_workflow(tmp_path / "slurm")
    dry = ok(*run(["snakemake", "metrics", "-n", "--profile", "profiles/slurm", *CONFIGS],
                  wf, "dry.log"), "dry run")
    expected = Counter({r: n for r, n in job_counts(dry).items() if is_training(r)})
    assert sum(expected.values()) > 0, dry

    # the local reference runs meanwhile: it fills the SLURM run's status-polling pauses
    reference = start(["snakemake", "metrics", "--cores", "2", *CONFIGS], local, "run.log")
    try:
        result = run(["snakemake", "metrics", "--profile", "profiles/slurm", *CONFIGS, *FAST],
                     wf, "run.log")
    finally:
        ok(*finish(reference, local, "run.log"), "local run")
    out = ok(*result, "SLURM run")

    # every training job, and nothing else, went through sbatch and completed there
    subs = submissions(out)
    assert Counter(subs.values()) == expected, out[-6000:]
    for jobid in subs:
        info = scontrol(jobid)
        assert "JobState=COMPLETED" in info, info
        assert f"WorkDir={wf}" in info, info
        assert list(wf.glob(f".snakemake/slurm_logs/rule_*/*/{jobid}.log")), jobid
    headers = Counter(re.findall(r"^(localrule|rule) (\w+):$", out, flags=re.M))
    assert {r for kind, r in headers if kind == "rule"} == set(expected), headers
    local_rules = {r for kind, r in headers if kind == "localrule"}
    assert {"prepare_dataset", "collect"} <= local_rules, headers
    assert any(r.startswith("measure") for r in local_rules), headers  # measure(_bundle_*)

    # CPU training is deterministic: the same numbers wherever the jobs ran
    a, b = (pd.read_csv(d / "results" / "metrics.csv") for d in (local, wf))
    a, b = (x.sort_values(METRIC_KEYS).reset_index(drop=True) for x in (a, b))
    assert len(a) > 0
    pd.testing.assert_frame_equal(a, b, check_exact=True)


def one_network_config(path: Path, **overrides) -> Path:
    """A config with one CE network (bundle: none -> rule `train`), plus overrides."""
    cfg = {"seeds": [0], "generations": 1, "execution": {"bundle": "none"},
           "experiments": [{"dataset": "mnist1d", "arch": "mlp"}], **overrides}
    path.write_text(yaml.safe_dump(cfg))
    return path


RUN = "results/mnist1d/mlp/ce/none/seed0/gen0"


def test_gpu_request_reaches_sbatch(slurm_cluster, tmp_path):
    extra = one_network_config(tmp_path / "gpu.yaml",
                               resources={"gpu": 1, "mem_mb": 1000, "runtime": 10},
                               execution={"bundle": "none", "device": "cpu"})
    wf = copy_workflow(tmp_path / "wf", extra)
    out = ok(*run(["snakemake", f"{RUN}/model.pt", "--profile", "profiles/slurm", *CONFIGS,
                   "gpu.yaml", *FAST, "--verbose"], wf, "run.log"), "SLURM run")

    subs = submissions(out)
    assert list(subs.values()) == ["train"], out[-6000:]
    (call,) = sbatch_calls(out)
    assert "--gpus=1" in call and "--mem 1000" in call and "-t 10" in call, call
    assert "--signal=TERM@120" in call, call  # the profile's slurm_extra is accepted by sbatch
    info = scontrol(next(iter(subs)))
    assert "JobState=COMPLETED" in info and "TresPerJob=gres:gpu:1" in info, info
    # the fake GPU is no CUDA device: execution.device cpu trains on the CPU (device auto
    # with resources.gpu 1 would stop with CudaUnavailableError, selfdistill.devices)
    assert yaml.safe_load((wf / RUN / "run.json").read_text())["device"] == "cpu"


def test_sigterm_checkpoint_and_retry_resume(slurm_cluster, tmp_path):
    extra = one_network_config(
        tmp_path / "long.yaml", resources={"gpu": 0, "mem_mb": 1000, "runtime": 10},
        train={"epochs": 40, "milestones": [30]},
        datasets={"mnist1d": {"num_samples": 4000}})
    wf = copy_workflow(tmp_path / "wf", extra)
    proc = start(["snakemake", f"{RUN}/model.pt", "--profile", "profiles/slurm", *CONFIGS,
                  "long.yaml", *FAST, "--verbose"], wf, "run.log")
    try:
        # as SLURM does --signal=TERM@120 seconds before the time limit: SIGTERM to the
        # job's steps, once training has written its first per-epoch checkpoint
        deadline = time.monotonic() + 300
        while not (wf / RUN / "resume.pt").exists():
            assert proc.poll() is None and time.monotonic() < deadline, "no resume.pt"
            time.sleep(0.1)
        running = subprocess.run(["squeue", "-h", "-t", "R", "-o", "%i"], capture_output=True,
                                 text=True, check=True).stdout.split()
        assert len(running) == 1, running
        subprocess.run(["scancel", "--signal=TERM", running[0]], check=True)
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    out = ok(*finish(proc, wf, "run.log"), "SLURM run")

    first, second = sbatch_calls(out)
    assert "--mem 1000" in first and "-t 10" in first, first
    assert "--mem 2000" in second and "-t 20" in second, second  # attempt 2: x2
    (killed, retried) = submissions(out)
    assert "JobState=FAILED" in scontrol(killed) and "JobState=COMPLETED" in scontrol(retried)
    provenance = yaml.safe_load((wf / RUN / "run.json").read_text())
    assert provenance["resumed_from_epoch"] is not None, provenance
    history = pd.read_csv(wf / RUN / "history.csv")
    assert history["epoch"].tolist() == list(range(1, 41))
    assert not (wf / RUN / "resume.pt").exists()

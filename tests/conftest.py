"""Shared test helpers: repository paths and a workflow copy runner."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "tests" / "data" / "tiny.yaml"


def copy_workflow(dest: Path) -> Path:
    """Copy what a user's clone holds (Snakefile, workflow/, config/, profiles/ and the
    top-level ``slurm`` link to profiles/slurm) into dest."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(REPO / "Snakefile", dest / "Snakefile")
    if (REPO / "slurm").is_symlink():
        (dest / "slurm").symlink_to(os.readlink(REPO / "slurm"))
    for name in ("workflow", "config", "profiles", "envs"):
        if (REPO / name).exists():
            shutil.copytree(REPO / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(TINY, dest / "tiny.yaml")
    return dest


def snakemake(workdir: Path, *args: str, timeout: int = 900,
              check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    proc = subprocess.run(["snakemake", *args], cwd=workdir, capture_output=True, text=True,
                          timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


@pytest.fixture
def workflow_dir(tmp_path: Path) -> Path:
    return copy_workflow(tmp_path / "wf")

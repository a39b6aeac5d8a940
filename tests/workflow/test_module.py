"""The workflow used as a Snakemake module from another directory (docs/development.md,
"Use as a module"): that directory's own Snakefile and complete config plan the grid, and its jobs
write their outputs there, while schema, src/, scripts and envs come from this repository."""

from pathlib import Path

import pytest
import yaml

from selfdistill import download as D
from selfdistill import grid as G

from ..conftest import REPO, TINY, snakemake
from .test_dag import expected_counts, job_counts, load_config

pytestmark = pytest.mark.slow

USER_SNAKEFILE = """\
configfile: "config/config.yaml"


module selfdistill:
    snakefile:
        "{snakefile}"
    config:
        config


use rule * from selfdistill
"""


def tiny_user_config() -> dict:
    """A complete config (config/config.yaml with tests/data/tiny.yaml on top), cut to one
    experiment, one seed and two epochs: what a module user's config/config.yaml holds."""
    cfg = load_config(REPO / "config" / "config.yaml", TINY)
    cfg["experiments"] = cfg["experiments"][:1]
    cfg["seeds"] = [0]
    cfg["train"].update(epochs=2, milestones=[1])
    return cfg


@pytest.fixture
def user_dir(tmp_path: Path) -> Path:
    """A directory holding only a Snakefile that uses this repository's as a module and
    its own config/config.yaml."""
    user = tmp_path / "user"
    (user / "config").mkdir(parents=True)
    (user / "Snakefile").write_text(USER_SNAKEFILE.format(snakefile=REPO / "Snakefile"))
    (user / "config" / "config.yaml").write_text(yaml.safe_dump(tiny_user_config()))
    return user


def test_module_dry_run_plans_the_users_grid(user_dir):
    cfg = tiny_user_config()
    proc = snakemake(user_dir, "-n", "all")
    want = expected_counts(cfg)
    sources = {cfg["datasets"][e["dataset"]]["source"] for e in cfg["experiments"]}
    for source in sorted(sources & set(D.SOURCES)):  # sources with archives to download
        want[f"download_{source}"] = 1
    want.update({f"render_{n}": 1 for n in ("e1", "e2", "e3", "e4", "e5", "claims")}, all=1)
    assert job_counts(proc.stdout) == want
    # the user's config, not the repository's default, sets the grid: 1 seed, 1 experiment
    assert len(G.grid(cfg)) == 1 + cfg["generations"] + sum(map(len, cfg["sweeps"].values()))


def test_module_job_writes_into_the_users_directory(user_dir):
    cfg = tiny_user_config()
    dataset = cfg["experiments"][0]["dataset"]
    target = f"{G.data_dir(dataset)}/manifest.json"
    snakemake(user_dir, "--cores", "1", target, timeout=600)
    assert (user_dir / target).is_file()
    assert any((user_dir / "logs").rglob("*")), "the job's log belongs to the user's dir"

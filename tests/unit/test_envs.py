"""envs/selfdistill.yaml lists the same dependencies as pyproject.toml."""

import re

import tomllib
import yaml

from ..conftest import REPO

CONDA_NAMES = {"torch": "pytorch"}  # PyPI name -> conda-forge name where they differ


def _split(req: str) -> tuple[str, str]:
    m = re.match(r"^\s*([A-Za-z0-9_.-]+)\s*(.*)$", req)
    assert m, req
    return m.group(1).lower(), m.group(2).replace(" ", "")


def test_conda_env_mirrors_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    want = dict(_split(r) for r in project["dependencies"])
    env = yaml.safe_load((REPO / "envs" / "selfdistill.yaml").read_text())
    got: dict[str, str] = {}
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            got.update(_split(r) for r in dep["pip"])
        else:
            name, spec = _split(dep)
            if name not in ("python", "pip"):
                got[name] = spec
    want = {CONDA_NAMES.get(k, k): v for k, v in want.items()}
    assert got == want

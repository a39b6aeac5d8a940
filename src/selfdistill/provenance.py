"""Provenance records kept beside every result: the evidence travels with the result."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import platform
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .io import sha256_file

__all__ = ["git_state", "package_versions", "provenance"]

_PACKAGES = ("torch", "torchvision", "snakemake", "numpy", "pandas", "matplotlib", "seaborn",
             "scipy", "mnist1d", "selfdistill")


def package_versions() -> dict[str, str | None]:
    """Versions as the running process sees them: an imported module's ``__version__``
    (e.g. torch's '2.14.1+cu130'), else the installed distribution's metadata."""
    out: dict[str, str | None] = {}
    for name in _PACKAGES:
        module = sys.modules.get(name)
        if module is not None and getattr(module, "__version__", None):
            out[name] = str(module.__version__)
            continue
        from_file = _version_file(name)
        if from_file:
            out[name] = from_file
            continue
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def _version_file(name: str) -> str | None:
    """``__version__`` from a package's ``version.py`` without importing it (torch's
    carries the build tag, e.g. '+cu130', that the distribution metadata lacks)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "version.py"
    if not path.is_file():
        return None
    m = re.search(r"^__version__\s*=\s*['\"]([^'\"]+)['\"]", path.read_text(), re.M)
    return m.group(1) if m else None


def git_state(cwd: str | Path | None = None) -> dict[str, Any]:
    """Commit and dirty flag of the working tree the pipeline runs in (None outside git)."""
    cwd = str(cwd or Path.cwd())
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True,
                                text=True, check=True, timeout=10).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                cwd=cwd, capture_output=True, text=True, check=True,
                                timeout=10).stdout
        return {"commit": commit, "dirty": bool(status.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def provenance(config: Any = None, inputs: list[str | Path] | None = None,
               device: str | None = None, wall_time_s: float | None = None,
               **extra: Any) -> dict[str, Any]:
    """A JSON-ready provenance record: config, git, versions, host, device, inputs' sha256."""
    return {
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "config": config,
        "git": git_state(),
        "versions": package_versions(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "device": device,
        "wall_time_s": wall_time_s,
        "inputs": {str(p): sha256_file(p) for p in (inputs or []) if Path(p).is_file()},
        **extra,
    }

"""Cheap code stays cheap: the DAG build, measure jobs and the progress command never import
torch, pandas or matplotlib (a login node watching a grid, a parse of the workflow). The
data layer has no import circle: data (dispatcher) -> sources -> prepared (format)."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize("modules", [
    "selfdistill.measure, selfdistill.grid, selfdistill.metrics",
    "selfdistill.progress",
])
def test_light_modules_do_not_import_heavy_libraries(modules):
    code = (f"import sys, {modules}; "
            "print(sorted(m for m in ('torch', 'pandas', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


# ------------------------------------------------------------------ the data layer's order

SRC = Path(__file__).resolve().parents[2] / "src" / "selfdistill"
DATA_LAYER = ["selfdistill.data", "selfdistill.prepared", "selfdistill.sources",
              *sorted(f"selfdistill.sources.{p.stem}" for p in (SRC / "sources").glob("*.py")
                      if p.stem != "__init__")]


def _imports(path: Path, code: str | None = None) -> set[str]:
    """Absolute names of the modules ``path`` (or ``code`` as if it were ``path``) imports:
    relative imports resolved; for ``from pkg import name`` both ``pkg`` and ``pkg.name``,
    which may be a module."""
    package = ".".join(path.relative_to(SRC.parent).with_suffix("").parts)
    if path.name != "__init__.py":
        package = package.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text() if code is None else code)):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] \
                if node.level else []
            mod = ".".join([*base, *([node.module] if node.module else [])])
            found |= {mod} | {f"{mod}.{a.name}" for a in node.names}
    return found


def test_sources_never_import_the_dispatcher() -> None:
    """The data layer reads top-down: data (dispatcher) -> sources -> prepared (format)."""
    for path in sorted((SRC / "sources").glob("*.py")):
        assert "selfdistill.data" not in _imports(path), (
            f"{path.name} imports selfdistill.data; import the format from ..prepared")
    below = _imports(SRC / "prepared.py")
    assert not {m for m in below if m.startswith(("selfdistill.sources", "selfdistill.data"))}
    assert "selfdistill.sources" in _imports(SRC / "data.py")


def test_the_scan_sees_relative_imports() -> None:
    """The scan above would catch the old ``from ..data import split_holdout``."""
    shared = SRC / "sources" / "shared.py"
    for code in ("from ..data import split_holdout\n", "from .. import data\n",
                 "import selfdistill.data\n"):
        assert "selfdistill.data" in _imports(shared, code), code
    assert "selfdistill.prepared" in _imports(shared, "from ..prepared import Split\n")
    assert "selfdistill.data" not in _imports(shared, "from .data import x\n")


@pytest.mark.parametrize("module", DATA_LAYER)
def test_each_data_module_imports_alone(module: str) -> None:
    subprocess.run([sys.executable, "-c", f"import {module}"], check=True, capture_output=True)


def test_data_reexports_the_prepared_format() -> None:
    from selfdistill import data, prepared

    for name in prepared.__all__:
        assert getattr(data, name) is getattr(prepared, name), name

"""Cheap code stays cheap: the DAG build, measure jobs and the progress command never import
torch, pandas or matplotlib (a login node watching a grid, a parse of the workflow)."""

import subprocess
import sys

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

"""Cheap rules stay cheap: the DAG build and measure jobs never import torch."""

import subprocess
import sys


def test_measure_and_grid_do_not_import_torch():
    code = ("import sys, selfdistill.measure, selfdistill.grid, selfdistill.metrics; "
            "print(sorted(m for m in ('torch', 'pandas', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"

"""Cheap rules stay cheap: the DAG build and measure jobs never import torch."""

import subprocess
import sys


def test_measure_and_grid_do_not_import_torch():
    code = ("import sys, selfdistill.measure, selfdistill.grid, selfdistill.metrics; "
            "print(sorted(m for m in ('torch', 'pandas', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


def test_deterministic_switch_does_not_import_the_compiler():
    """set_determinism sets ATen's flag without importing torch._inductor (5 s per job)
    unless the run compiles; the flag itself is really switched both ways."""
    code = (
        "import sys, torch\n"
        "from selfdistill.train import set_determinism\n"
        "set_determinism(True, torch.device('cpu'))\n"
        "on = torch.are_deterministic_algorithms_enabled()\n"
        "set_determinism(False, torch.device('cpu'))\n"
        "off = torch.are_deterministic_algorithms_enabled()\n"
        "print(on, off, 'torch._inductor' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["True", "False", "False"]

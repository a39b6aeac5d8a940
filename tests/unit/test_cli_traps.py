"""CLI traps a researcher falls into: prefixes of flag names, advice for a missing dataset."""

import subprocess
import sys

import pytest

from selfdistill.prepared import DataError, load_manifest

from .test_cli import BASE, spec, usage_error


def test_a_prefix_of_a_flag_is_not_taken_for_it(capsys):
    """--bs-a was silently read as --bs-alpha (BS's α) by argparse's prefix matching; a is
    BS's swept strength, given as --param."""
    err = usage_error([*BASE, "--method", "bs", "--param", "3", "--bs-a", "0.5"], capsys)
    assert "unrecognized arguments: --bs-a 0.5" in err
    assert spec("--method", "bs", "--param", "3", "--bs-alpha", "0.5").options["alpha"] == 0.5


def test_missing_data_directory_advice_fits_a_cli_user(tmp_path):
    with pytest.raises(DataError) as err:
        load_manifest(tmp_path / "nowhere")
    text = str(err.value)
    assert "python -m selfdistill prepare" in text and "--data" in text
    done = subprocess.run([sys.executable, "-m", "selfdistill", *BASE[:2], str(tmp_path / "x"),
                           *BASE[3:], "--method", "ce"], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert done.returncode != 0
    assert "python -m selfdistill prepare" in done.stderr, done.stderr[-1500:]

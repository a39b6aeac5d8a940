"""The rule files are snakefmt-clean (pyproject.toml [tool.snakefmt])."""

import subprocess

from ..conftest import REPO

RULE_FILES = [REPO / "Snakefile", *sorted((REPO / "workflow" / "rules").glob("*.smk"))]


def test_rule_files_are_snakefmt_clean():
    proc = subprocess.run(["snakefmt", "--check", *map(str, RULE_FILES)], cwd=REPO,
                          capture_output=True, text=True)
    assert proc.returncode == 0, (
        f"run `snakefmt Snakefile workflow/rules/` to reformat:\n{proc.stderr[-3000:]}")


def test_rule_files_are_listed():
    assert len(RULE_FILES) >= 8

"""Every job's messages land in its rule's log: the wrappers' shared log helper."""

import ast
import subprocess
import sys

import pytest

from ..conftest import REPO, snakemake

SCRIPTS = sorted((REPO / "workflow" / "scripts").glob("*.py"))


def test_log_records_warnings_and_the_traceback_are_appended(tmp_path):
    log = tmp_path / "logs" / "rule" / "job.log"
    log.parent.mkdir(parents=True)
    log.write_text("earlier attempt\n")
    code = ("import logging, warnings\n"
            "from selfdistill.logs import to_rule_log\n"
            f"to_rule_log({str(log)!r})\n"
            "logging.getLogger('selfdistill.x').info('step %d', 7)\n"
            "warnings.warn('careful')\n"
            "raise RuntimeError('boom')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    # the terminal gets the error's class and message and where the traceback is, no more
    assert proc.returncode != 0
    assert proc.stderr == f"selfdistill: RuntimeError: boom\nselfdistill: traceback in {log}\n"
    text = log.read_text()
    assert text.startswith("earlier attempt\n")  # appended, not truncated (retries)
    assert "INFO selfdistill.x: step 7" in text
    assert "UserWarning: careful" in text
    assert "Traceback" in text and "RuntimeError: boom" in text


def _statements_after_imports(path):
    body = [s for s in ast.parse(path.read_text()).body
            if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]  # docstring
    while body and isinstance(body[0], ast.Import | ast.ImportFrom):
        body.pop(0)
    return body


def test_every_wrapper_first_sends_its_output_to_the_rule_log():
    assert len(SCRIPTS) >= 10
    for path in SCRIPTS:
        first = _statements_after_imports(path)[0]
        assert ast.unparse(first) == "to_rule_log(snakemake.log[0])", path.name
        assert "logging.basicConfig" not in path.read_text(), path.name


@pytest.mark.slow
def test_a_failed_jobs_named_error_is_on_snakemakes_terminal(workflow_dir):
    """A new user's first mistake on a CPU machine, ``execution.device: cuda``: the training
    job fails with CudaUnavailableError, and its message (key and fix) is in snakemake's own
    output, not only in the job's log."""
    (workflow_dir / "cuda.yaml").write_text(
        "seeds: [0]\nexperiments: [{dataset: mnist1d, arch: mlp}]\nexecution: {device: cuda}\n")
    proc = snakemake(workflow_dir, "--cores", "1", "metrics", "--configfile",
                     "config/config.yaml", "tiny.yaml", "cuda.yaml", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "selfdistill: CudaUnavailableError: execution.device is 'cuda'" in out, out[-3000:]
    assert "execution.device: cpu" in out  # the fix, as the error names it
    log = next(workflow_dir.glob("logs/train*/**/*.log"))
    assert f"selfdistill: traceback in {log.relative_to(workflow_dir)}" in out
    assert "Traceback" in log.read_text()

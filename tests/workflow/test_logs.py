"""Every job's messages land in its rule's log: the wrappers' shared log helper."""

import ast
import subprocess
import sys

from ..conftest import REPO

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
    assert proc.returncode != 0 and proc.stderr == ""
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

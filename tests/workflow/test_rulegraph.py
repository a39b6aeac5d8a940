"""docs/rulegraph.png (shown in README) stays current: its rules equal the workflow's."""

import re

import pytest

from ..conftest import REPO, snakemake


def rules_in(dot: str) -> set[str]:
    return set(re.findall(r'label = "([^"]+)"', dot))


@pytest.mark.slow
def test_rulegraph_picture_is_current(workflow_dir):
    proc = snakemake(workflow_dir, "all", "--rulegraph")
    current = rules_in(proc.stdout)
    committed = rules_in((REPO / "docs" / "rulegraph.dot").read_text())
    assert current == committed, (
        "the rule graph changed: regenerate with `snakemake all --rulegraph > docs/rulegraph.dot"
        " && dot -Tpng docs/rulegraph.dot -o docs/rulegraph.png`")
    assert {"prepare_dataset", "measure_bundle_mnist1d_cnn1d", "collect",
            "render_claims"} <= current
    assert (REPO / "docs" / "rulegraph.png").stat().st_size > 1000

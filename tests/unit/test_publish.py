"""docs/results/ publishing: copies the listed files and records where they came from."""

import json

import pytest

from selfdistill.publish import PUBLISHED, publish


def _figures(tmp_path):
    fig = tmp_path / "figures"
    fig.mkdir()
    for name in PUBLISHED:
        (fig / name).write_text(f"content of {name}")
    (fig / "claims.json").write_text(json.dumps({
        "git": {"commit": "abc123", "dirty": False}, "created_utc": "2026-11-30T03:00:00Z",
        "host": "box", "versions": {"torch": "2.14.1"}}))
    res = tmp_path / "results"
    res.mkdir()
    (res / "metrics.csv").write_text("a,b\n1,2\n3,4\n")
    return fig, res


def test_publish_copies_files_and_records_source(tmp_path):
    fig, res = _figures(tmp_path)
    out = tmp_path / "docs" / "results"
    copied = publish(fig, res, out, wall_s=512.4)
    assert sorted(p.name for p in copied) == sorted(PUBLISHED)
    for name in PUBLISHED:
        assert (out / name).read_text() == f"content of {name}"
    readme = (out / "README.md").read_text()
    assert "`abc123`" in readme and "2026-11-30T03:00:00Z" in readme
    assert "512 s" in readme and "| rows of results/metrics.csv | 2 |" in readme


def test_publish_refuses_an_unfinished_run(tmp_path):
    fig, res = _figures(tmp_path)
    (fig / "claims.md").unlink()
    with pytest.raises(FileNotFoundError, match="claims.md"):
        publish(fig, res, tmp_path / "out")
    assert not (tmp_path / "out").exists()

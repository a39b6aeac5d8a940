"""The run-log analysis: where a finished run's wall and core time went."""

import json

import pytest

from selfdistill import bench, runlog


def _history(path, rows):
    path.mkdir(parents=True, exist_ok=True)
    (path / "history.csv").write_text("epoch,train_step_s,step_start_unix,step_end_unix\n" + "".join(
        f"{i + 1},{sec},{a},{b}\n" for i, (a, b, sec) in enumerate(rows)))


def test_outside_training_share_from_a_run_dir(tmp_path):
    """Wall time outside steps = wall minus the union of the networks' epoch step spans
    inside this invocation's window (log header start + wall); core-time share from those
    epochs' step seconds; job share from the training jobs' lines in the snakemake log
    (two overlapping jobs, one gap, a head and tail)."""
    from datetime import datetime

    log = tmp_path / ".snakemake" / "log"
    log.mkdir(parents=True)
    (log / "2026-01-01T000000.snakemake.log").write_text(
        "SNAKEMAKE\n  Date: 2026-11-29 15:50:00\n"
        "Building DAG\n[Sun Nov 29 15:50:00 2026]\nlocalrule prepare_dataset:\n    jobid: 1\n"
        "[Sun Nov 29 15:50:10 2026]\nFinished jobid: 1 (Rule: prepare_dataset)\n"
        "[Sun Nov 29 15:50:10 2026]\nlocalrule train_bundle_m_cnn:\n    jobid: 2\n"
        "[Sun Nov 29 15:50:20 2026]\nlocalrule train_bundle_m_mlp:\n    jobid: 3\n"
        "[Sun Nov 29 15:50:50 2026]\nFinished jobid: 2 (Rule: train_bundle_m_cnn)\n"
        "[Sun Nov 29 15:51:00 2026]\nFinished jobid: 3 (Rule: train_bundle_m_mlp)\n"
        "[Sun Nov 29 15:51:10 2026]\nrule train:\n    jobid: 4\n"
        "[Sun Nov 29 15:51:30 2026]\nFinished jobid: 4 (Rule: train)\n"
        "[Sun Nov 29 15:51:40 2026]\nlocalrule all:\n")
    t = datetime(2026, 11, 29, 15, 50, 0).timestamp()  # the log's local-time start
    _history(tmp_path / "results" / "a", [(t + 10, t + 30, 18.0), (t + 60, t + 70, 9.0)])
    # network b: one epoch in this run, one from a later re-run (outside the window)
    _history(tmp_path / "results" / "b", [(t + 20, t + 40, 20.0), (t + 500, t + 510, 10.0)])
    _history(tmp_path / "results", [(t, t + 100, 100.0)])  # the collected copy: skipped
    share = runlog.outside_training_share(tmp_path, cores=2)
    assert share["wall_s"] == 100.0
    assert share["train_step_s"] == pytest.approx(47.0)
    assert share["share_outside_training"] == pytest.approx(1 - 47 / 200)
    assert share["wall_with_steps_s"] == pytest.approx(40.0)  # [10, 40] + [60, 70]
    assert share["wall_share_outside_steps"] == pytest.approx(0.6)
    assert share["wall_with_training_s"] == 50.0 + 20.0  # 15:50:10-15:51:00, 15:51:10-15:51:30
    assert share["wall_share_without_training"] == pytest.approx(0.3)


def test_outside_training_share_needs_step_spans(tmp_path):
    """A run directory from before step spans were recorded: a clear error naming the fix."""
    log = tmp_path / ".snakemake" / "log"
    log.mkdir(parents=True)
    (log / "x.snakemake.log").write_text("[Sun Nov 29 15:50:00 2026]\n")
    (tmp_path / "results").mkdir()
    with pytest.raises(FileNotFoundError, match="step_start_unix"):
        runlog.outside_training_share(tmp_path, cores=2, total_wall_s=10.0)


def test_outside_training_share_from_a_quiet_log(tmp_path):
    """`snakemake -q` logs name no jobs and carry no timestamps: the wall time must come
    from --wall, and the job-based share is reported unknown (None), not 100 %."""
    log = tmp_path / ".snakemake" / "log"
    log.mkdir(parents=True)
    (log / "x.snakemake.log").write_text("Building DAG of jobs...\nExecute 2 jobs...\n")
    _history(tmp_path / "results" / "a", [(100.0, 115.0, 14.0)])
    with pytest.raises(ValueError, match="--wall"):
        runlog.outside_training_share(tmp_path, cores=2)
    share = runlog.outside_training_share(tmp_path, cores=2, total_wall_s=20.0)
    assert share["wall_share_outside_steps"] == pytest.approx(0.25)
    assert share["share_outside_training"] == pytest.approx(1 - 14 / 40)
    out = tmp_path / "bench"
    assert bench.main(["--from-run", str(tmp_path), "--wall", "20", "--out", str(out)]) == 0
    assert json.loads((out / "run_shares.json").read_text())["wall_s"] == 20.0
    md = (out / "run_shares.md").read_text()
    assert "| wall time outside training steps (no optimiser step in any job) | 25.0 % |" in md
    assert "unknown (log written with -q)" in md
    assert share["wall_with_training_s"] is None and share["wall_share_without_training"] is None

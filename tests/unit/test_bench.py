"""The benchmark runs at CI scale and its faithfulness check holds (and can fail)."""

import csv
import json

import pytest

from selfdistill import bench


def test_bench_small_writes_outputs_and_is_faithful(tmp_path):
    ok = bench.run_benchmark(tmp_path, rounds=1, steps=3, small=True)
    assert ok
    for name in ("data_only_mnist1d", "data_path_mnist1d", "full_step_mnist1d",
                 "data_only_cifar", "data_path_cifar", "full_step_cifar", "method_cost_mnist1d",
                 "faithfulness"):
        assert (tmp_path / f"{name}.csv").exists()
    rows = list(csv.DictReader(open(tmp_path / "faithfulness.csv")))
    assert {r["method"] for r in rows} == {"ce", "sd", "bs"}
    assert all(float(r["max_abs_diff"]) <= 1e-5 for r in rows)
    summary = (tmp_path / "summary.md").read_text()
    assert "ours ÷ DataLoader" in summary and "ours ÷ authors' loop" in summary
    assert "ceiling for any data path" in summary
    # ratios.csv: one row per reported ratio, recomputable from the suite's own timings
    ratio_rows = list(csv.DictReader(open(tmp_path / "ratios.csv")))
    timings = list(csv.DictReader(open(tmp_path / "data_path_mnist1d.csv")))
    assert {r["variant"] for r in timings} == {"ours", "dataloader", "model_only"}
    for measure, key in (("examples_per_s", "seconds"), ("examples_per_cpu_s", "cpu_seconds")):
        ceiling = [r for r in ratio_rows if r["suite"] == "data_path_mnist1d"
                   and r["measure"] == measure and r["numerator"] == "model_only"
                   and r["denominator"] == "dataloader"]
        assert len(ceiling) == 1
        t = {r["variant"]: float(r[key]) for r in timings}
        assert float(ceiling[0]["median"]) == pytest.approx(t["dataloader"] / t["model_only"])
    # the DataLoader's two worker processes are counted in its CPU time
    by_variant = {r["variant"]: r for r in timings}
    assert float(by_variant["dataloader"]["cpu_seconds"]) > 0
    assert {(r["numerator"], r["denominator"], r["measure"]) for r in ratio_rows
            if r["suite"] == "method_cost_mnist1d"} == {
        (m, "ce", k) for m in ("sd", "bs") for k in ("epoch_seconds", "epoch_cpu_seconds")}


@pytest.mark.parametrize("method", ["sd", "bs"])
def test_faithfulness_detects_a_different_method(monkeypatch, method):
    """A reference with another alpha must be caught: the check is not vacuous."""
    original = bench._reference_loss

    def wrong(m, z, x, y, net, gen):
        return original(m, z, x, y, net, gen) * 1.01

    monkeypatch.setattr(bench, "_reference_loss", wrong)
    fast, ref = bench.reference_losses("mnist1d", "cnn1d", method, 2)
    assert max(abs(a - b) for a, b in zip(fast, ref, strict=True)) > 1e-5


def test_model_only_trains_the_same_model_without_data_work():
    """The ceiling variant runs real optimiser steps of the benchmark's model."""
    torch = pytest.importorskip("torch")
    step = bench.model_only("mnist1d", "cnn1d", steps=2)
    model_params = [c for c in step.__closure__ if isinstance(c.cell_contents, torch.nn.Module)
                    and any(True for _ in c.cell_contents.parameters())]
    assert len(model_params) == 1
    before = [p.detach().clone() for p in model_params[0].cell_contents.parameters()]
    assert step() == 2 * 128
    after = list(model_params[0].cell_contents.parameters())
    assert all(not torch.equal(a, b) for a, b in zip(before, after, strict=True))


def test_children_cpu_seconds_counts_child_processes():
    """Work done in a child process (as by DataLoader workers) shows in the CPU count."""
    import subprocess
    import sys
    spin = ("import sys, time\nsys.stdin.readline()\nt = time.process_time()\n"
            "while time.process_time() - t < 0.6: pass\nprint('done', flush=True)\n"
            "sys.stdin.readline()\n")
    child = subprocess.Popen([sys.executable, "-c", spin], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        c0 = bench.children_cpu_seconds()
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "done"  # the child is alive, idle again
        dc = bench.children_cpu_seconds() - c0
    finally:
        child.kill()
        child.wait()
    assert dc >= 0.5


def test_ratios_median_min_max():
    rows = [{"round": 0, "variant": "a", "seconds": 1.0}, {"round": 0, "variant": "b",
                                                           "seconds": 2.0},
            {"round": 1, "variant": "a", "seconds": 1.0}, {"round": 1, "variant": "b",
                                                           "seconds": 4.0}]
    r = bench.ratios(rows, "a", "b", invert=True)
    assert r == {"median": 3.0, "min": 2.0, "max": 4.0, "rounds": 2}


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
    share = bench.outside_training_share(tmp_path, cores=2)
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
        bench.outside_training_share(tmp_path, cores=2, total_wall_s=10.0)


def test_outside_training_share_from_a_quiet_log(tmp_path):
    """`snakemake -q` logs name no jobs and carry no timestamps: the wall time must come
    from --wall, and the job-based share is reported unknown (None), not 100 %."""
    log = tmp_path / ".snakemake" / "log"
    log.mkdir(parents=True)
    (log / "x.snakemake.log").write_text("Building DAG of jobs...\nExecute 2 jobs...\n")
    _history(tmp_path / "results" / "a", [(100.0, 115.0, 14.0)])
    with pytest.raises(ValueError, match="--wall"):
        bench.outside_training_share(tmp_path, cores=2)
    share = bench.outside_training_share(tmp_path, cores=2, total_wall_s=20.0)
    assert share["wall_share_outside_steps"] == pytest.approx(0.25)
    assert share["share_outside_training"] == pytest.approx(1 - 14 / 40)
    out = tmp_path / "bench"
    assert bench.main(["--from-run", str(tmp_path), "--wall", "20", "--out", str(out)]) == 0
    assert json.loads((out / "run_shares.json").read_text())["wall_s"] == 20.0
    md = (out / "run_shares.md").read_text()
    assert "| wall time outside training steps (no optimiser step in any job) | 25.0 % |" in md
    assert "unknown (log written with -q)" in md
    assert share["wall_with_training_s"] is None and share["wall_share_without_training"] is None


def test_flops_per_image_counts_forward_and_backward():
    """mlp on 40 inputs: 3 linear layers; fwd 2*MACs, bwd 2x fwd (input + weight grads),
    except the first layer's input gradient, which autograd skips (input needs no grad)."""
    macs = 40 * 128 + 128 * 128 + 128 * 10
    first_input_grad = 40 * 128
    want = 2 * macs + 2 * (2 * macs - first_input_grad)
    assert bench.flops_per_image("mlp", (1, 40), 10, batch=4) == want

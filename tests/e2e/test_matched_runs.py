"""Matched-entropy runs through the real snakemake CLI (methods §5 E2, §6 claim 3): a sweep
that brackets SD's validation entropy but misses a tight tolerance makes the checkpoint
train interpolated LS and ER strengths on every seed, in two rounds."""

import json

import pandas as pd
import pytest

from selfdistill import matching as M

from ..conftest import copy_workflow, snakemake

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

OVERLAY = """\
sweeps:
  ls_eps: [0.01, 0.5]
  er_beta: [0.01, 3.0]
  bs_a: [3]
compare:
  ls_eps: 0.01
  er_beta: 0.01
  entropy_tolerance: 0.001
experiments:
  - dataset: mnist1d
    arch: cnn1d
"""
CONFIGS = ("--configfile", "config/config.yaml", "tiny.yaml", "match.yaml")


@pytest.fixture(scope="module")
def matched_run(tmp_path_factory):
    wf = copy_workflow(tmp_path_factory.mktemp("matched") / "wf")
    (wf / "match.yaml").write_text(OVERLAY)
    snakemake(wf, "--cores", "2", "metrics", *CONFIGS)
    return wf


def read(path):
    return pd.read_csv(path, dtype={"param": str}, keep_default_na=False)


def test_rounds_train_interpolated_strengths_on_every_seed(matched_run):
    wf = matched_run
    metrics = read(wf / "results" / "metrics.csv")
    val = metrics[metrics["split"] == "val"]
    rounds = [json.loads((wf / f"results/matched/mnist1d/cnn1d/round{k}.json").read_text())
              for k in (1, 2)]
    target = val[(val["method"] == "sd") & (val["gen"] == 1)]["entropy"].mean()
    trained = []
    for k, decision in enumerate(rounds, 1):
        assert decision["round"] == k
        assert decision["target_entropy"] == pytest.approx(target, abs=1e-12)
        trained += M.to_train(decision)
    assert {m for m, _ in trained} == {"ls", "er"}  # both sweeps bracket, both miss 0.001
    for method, param in trained:
        runs = val[(val["method"] == method) & (val["param"] == param)]
        assert sorted(runs["seed"]) == [0, 1], (method, param)
        for seed in (0, 1):
            d = wf / f"results/matched/mnist1d/cnn1d/{method}/{param}/seed{seed}/gen0"
            assert (d / "model.pt").is_file() and (d / "metrics_last.csv").is_file()
            assert json.loads((d / "run.json").read_text())["run"]["param"] == float(param)
    # round 2 saw round 1's measured points
    for method, param in M.to_train(rounds[0]):
        assert param in rounds[1]["methods"][method]["points"]


def test_matched_table_is_the_closest_measured_point(matched_run):
    wf = matched_run
    metrics = read(wf / "results" / "metrics.csv")
    val = metrics[metrics["split"] == "val"]
    table = read(wf / "results" / "matched" / "matched.csv")
    assert list(table.columns) == M.MATCHED_COLUMNS
    for r in table.itertuples():
        runs = val[val["method"] == r.method]
        means = runs.groupby("param")["entropy"].mean()
        best = (means - r.target_entropy).abs().idxmin()
        assert r.param == best
        assert r.gap == pytest.approx(means[best] - r.target_entropy, abs=1e-12)
        assert r.status == "interpolated"


def test_a_finished_run_has_nothing_to_do(matched_run):
    out = snakemake(matched_run, "-n", "metrics", *CONFIGS)
    assert "Nothing to be done" in out.stdout + out.stderr

"""The tiny config through the real snakemake CLI: every table, figure and CSV."""

import json
import math
import re
import subprocess

import pandas as pd
import pytest

from selfdistill import grid as G
from selfdistill import measure as M

from ..conftest import REPO, copy_workflow, snakemake
from ..workflow.test_dag import load_config

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

METRIC_COLUMNS = ["dataset", "arch", "method", "param", "seed", "gen", "split", "accuracy",
                  "nll", "ece", "entropy", "cd_entropy_max", "cd_entropy_true", "cd_std_max",
                  "cd_std_true"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    wf = copy_workflow(tmp_path_factory.mktemp("e2e") / "wf")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "tiny"]):
        subprocess.run([*git, *cmd], cwd=wf, check=True)
    (wf / ".gitignore").write_text("results/\nfigures/\nlogs/\nbenchmarks/\n.snakemake/\n")
    snakemake(wf, "--cores", "2", "all", "--configfile", "config/config.yaml", "tiny.yaml")
    return wf


def test_every_provenance_sidecar_is_filled_and_true(tiny_run):
    import numpy
    import pandas
    import snakemake as sm
    import torch
    import torchvision

    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tiny_run, capture_output=True,
                          text=True, check=True).stdout.strip()
    sidecars = list((tiny_run / "figures").glob("*.json"))
    sidecars += list((tiny_run / "results").rglob("run.json"))
    assert len(sidecars) == 7 + len(G.grid(tiny_config()))
    modules = {"torch": torch, "torchvision": torchvision, "numpy": numpy, "pandas": pandas,
               "snakemake": sm}
    from selfdistill.io import sha256_file

    for path in sidecars:
        prov = json.loads(path.read_text())
        assert prov["git"]["commit"] == head, path
        assert prov["git"]["dirty"] is False, path  # outputs are gitignored
        for name in ("torch", "torchvision", "numpy"):
            assert prov["versions"][name] == modules[name].__version__, (path, name)
        assert prov["wall_time_s"] is not None and prov["wall_time_s"] >= 0, path
        assert isinstance(prov["config"], dict), path
        assert prov["inputs"], path
        for file, digest in prov["inputs"].items():
            assert sha256_file(tiny_run / file) == digest, (path, file)


def tiny_config():
    return load_config(REPO / "config" / "config.yaml", REPO / "tests" / "data" / "tiny.yaml")


def test_metrics_csv_rows_columns_finite(tiny_run):
    df = pd.read_csv(tiny_run / "results" / "metrics.csv", keep_default_na=False,
                     dtype={"param": str})
    assert set(METRIC_COLUMNS) <= set(df.columns)
    runs = G.grid(tiny_config())
    assert len(df) == 3 * len(runs)  # train, val, test per network
    assert set(df["split"]) == {"train", "val", "test"}
    assert set(df["method"]) == {"ce", "ls", "er", "sd", "bs"}
    assert (df.loc[df.method.isin(["ce", "sd"]), "param"] == "").all()
    assert (df.loc[df.method != "sd", "gen"] == 0).all()
    assert sorted(df.loc[df.method == "sd", "gen"].unique()) == [1, 2]
    for col in METRIC_COLUMNS[7:]:
        assert df[col].map(math.isfinite).all(), col
    assert df["accuracy"].between(0, 1).all() and df["ece"].between(0, 1).all()


def test_metrics_last_has_the_same_rows_for_the_last_epochs_weights(tiny_run):
    """results/metrics_last.csv: metrics.csv's columns and rows (network x split), measured
    on the last epoch's weights; a network whose best epoch is its last has equal rows."""
    read = lambda name: pd.read_csv(tiny_run / "results" / name, keep_default_na=False,  # noqa: E731
                                    dtype={"param": str})
    best, last = read("metrics.csv"), read("metrics_last.csv")
    assert list(last.columns) == list(best.columns) and len(last) == len(best)
    keys = M.RUN_COLUMNS + ["split"]
    merged = best.merge(last, on=keys + ["n"], suffixes=("", "_last"), validate="one_to_one")
    assert len(merged) == len(best)
    epochs = tiny_config()["train"]["epochs"]
    differs = 0
    for run in G.grid(tiny_config()):
        record = json.loads((tiny_run / G.run_dir(run) / "run.json").read_text())
        rows = merged[(merged.dataset == run.dataset) & (merged.arch == run.arch) &
                      (merged.method == run.method) & (merged.seed == run.seed) &
                      (merged.gen == run.gen) & (merged.param == G.csv_param(run.param))]
        assert len(rows) == 3
        equal = all(rows[c].tolist() == rows[f"{c}_last"].tolist() for c in M.METRIC_COLUMNS)
        if record["best_epoch"] == epochs:
            assert equal, run
        differs += not equal
    assert differs == sum(  # and only then
        json.loads((tiny_run / G.run_dir(r) / "run.json").read_text())["best_epoch"] != epochs
        for r in G.grid(tiny_config()))


def test_every_figure_and_table_exists(tiny_run):
    for stem in ("e1_generations", "e2_entropy_accuracy", "e4_reliability",
                 "e5_beta_sensitivity"):
        for ext in ("png", "pdf", "json"):
            assert (tiny_run / "figures" / f"{stem}.{ext}").stat().st_size > 0, stem
    for stem in ("e2_matched_entropy", "e3_methods"):
        for ext in ("csv", "md", "tex", "json"):
            assert (tiny_run / "figures" / f"{stem}.{ext}").stat().st_size > 0, stem
    claims = pd.read_csv(tiny_run / "figures" / "claims.csv")
    assert {"claim", "statistic", "value", "low", "high", "verdict"} <= set(claims.columns)
    assert set(claims["verdict"]) <= {"supported", "contradicted", "no effect", "inconclusive"}


def test_run_provenance(tiny_run):
    prov = json.loads(next((tiny_run / "results").glob("mnist1d/cnn1d/sd/none/seed1/gen2/"
                                                       "run.json")).read_text())
    assert prov["run"]["teacher"].endswith("sd/none/seed1/gen1/model.pt")
    assert prov["device"] == "cpu" and prov["wall_time_s"] > 0
    assert all(len(h) == 64 for h in prov["inputs"].values())


def test_figures_target_rerenders_without_training(tiny_run):
    (tiny_run / "figures" / "e3_methods.md").unlink()
    proc = snakemake(tiny_run, "--cores", "1", "figures", "--configfile", "config/config.yaml",
                     "tiny.yaml")
    assert "train" not in _executed_rules(proc)
    assert (tiny_run / "figures" / "e3_methods.md").exists()


def _executed_rules(proc: subprocess.CompletedProcess) -> str:
    return proc.stdout.split("Job stats:")[1] if "Job stats:" in proc.stdout else ""


def test_same_config_twice_gives_identical_metrics(tiny_run, tmp_path):
    """Determinism through the CLI: a second, independent run gives the same metrics.csv."""
    again = copy_workflow(tmp_path / "again")
    snakemake(again, "--cores", "2", "metrics", "--configfile", "config/config.yaml",
              "tiny.yaml")
    a = (tiny_run / "results" / "metrics.csv").read_bytes()
    b = (again / "results" / "metrics.csv").read_bytes()
    assert a == b
    df = pd.read_csv(tiny_run / "results" / "metrics.csv", keep_default_na=False)
    s0 = df[(df.seed == 0) & (df.method == "ce")].reset_index(drop=True)
    s1 = df[(df.seed == 1) & (df.method == "ce")].reset_index(drop=True)
    assert not s0["nll"].equals(s1["nll"])  # different seeds, different networks


def test_html_report_holds_every_figure_table_and_caption(tiny_run):
    snakemake(tiny_run, "--report", "report.html", "--configfile", "config/config.yaml",
              "tiny.yaml")
    html = (tiny_run / "report.html").read_text(errors="replace")
    for name in ("e1_generations.png", "e2_entropy_accuracy.png", "e4_reliability.png",
                 "e5_beta_sensitivity.png", "e2_matched_entropy", "e3_methods", "claims.csv"):
        assert name in html, name
    for caption in sorted((REPO / "workflow" / "report").glob("*.rst")):
        if caption.stem in ("workflow", "e6_teacher_free"):  # E6: only with the teacher-free
            continue                                          # family, not in the tiny run
        # the caption's opening words, up to the first character HTML/JSON would escape
        first_line = caption.read_text().split("\n")[0].strip()
        first_words = re.match(r"[A-Za-z0-9 ,.()-]*", first_line).group(0)[:40]
        assert len(first_words) >= 10 and first_words in html, (caption.name, first_words)


def test_every_job_writes_to_its_rule_log(tiny_run):
    """Train, measure and collect jobs log through selfdistill.logs.to_rule_log: each log
    holds lines in its format, none a traceback."""
    for log in ("train_bundle/mnist1d/cnn1d/seed0.log", "measure_bundle/mnist1d/mlp/seed1.log",
                "collect/collect.log", "render/render_e3.log"):
        text = (tiny_run / "logs" / log).read_text()
        assert re.search(r"^\d{4}-\d\d-\d\d [\d:,]+ INFO selfdistill\.\w+: ", text, re.M), log
        assert "Traceback" not in text, log


def test_every_network_logs_one_line_per_epoch(tiny_run):
    """selfdistill.run.EpochReport: each training job's log holds one INFO line per epoch of
    each of its networks, in DAG order, naming the network (k/n of its bundle) and run."""
    cfg = tiny_config()
    epochs = cfg["train"]["epochs"]
    for exp in G.experiments(cfg):
        for seed in cfg["seeds"]:
            runs = G.bundle_parts(exp, "seed", seed)["bundle"]
            log = tiny_run / "logs" / "train_bundle" / exp["dataset"] / exp["arch"] / \
                f"seed{seed}.log"
            lines = re.findall(r"^\S+ \S+ INFO selfdistill\.run: network (\d+)/(\d+) · (\S+) · "
                               r"epoch (\d+)/(\d+) · loss ", log.read_text(), re.M)
            want = [(str(k), str(len(runs)), G.run_dir(r, "").lstrip("/"), str(e), str(epochs))
                    for k, r in enumerate(runs, 1) for e in range(1, epochs + 1)]
            assert lines == want, log

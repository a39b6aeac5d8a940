"""config/paper_smoke.yaml through the real snakemake CLI on the CPU: a fabricated CIFAR-10
archive in the real format (python pickles in tar.gz, tests/unit/test_download.py) served
by a loopback HTTP server, downloaded and checked, prepared, then every method on both
paper networks (the real ResNet-34 and DenseNet-BC-100: one epoch on 80 images takes
seconds on a CPU), measured and rendered.

Only sizes and the place of execution are overridden (tmp/cpu.yaml): the archive's mirror
and checksums, 20 validation images, 1 epoch, device cpu, no GPU requested.
"""

import http.server
import json
import math
import threading
from functools import partial

import pandas as pd
import pytest
import yaml

from selfdistill import grid as G
from selfdistill.methods import PAPER_METHODS

from ..conftest import copy_workflow, snakemake
from ..unit.test_download import _Handler, _md5, _sha256, make_cifar10
from ..workflow.test_dag import load_config

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ARCHS = ("resnet34", "densenet_bc100")
METHODS = set(PAPER_METHODS)


def _config(wf):
    """The smoke run's merged config (the order of its --configfile list)."""
    return load_config(wf / "config" / "config.yaml", wf / "config" / "paper_smoke.yaml",
                       wf / "cpu.yaml")


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    """(base URL, archive) of a fabricated cifar-10-python.tar.gz on a loopback server."""
    root = tmp_path_factory.mktemp("mirror")
    make_cifar10(root / "cifar-10-python.tar.gz", per_class=2)  # 100 train, 40 test images
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             partial(_Handler, directory=root))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root / "cifar-10-python.tar.gz"
    server.shutdown()
    server.server_close()


def cpu_overrides(url: str, archive) -> dict:
    """The smoke config's shape with CPU sizes: the blocks it replaces are written whole."""
    resources = {"gpu": 0, "mem_mb": 2000, "runtime": 20}
    return {
        "datasets": {"cifar10": {"source": "cifar10", "val_size": 20, "split_seed": 0,
                                 "augment": "crop_flip", "augment_padding": 4, "mirror": url,
                                 "sha256": _sha256(archive), "md5": _md5(archive)}},
        "train": {"epochs": 1, "milestones": []},
        "experiments": [{"dataset": "cifar10", "arch": a, "resources": resources}
                        for a in ARCHS],
        "execution": {"device": "cpu", "threads": 1},
        "resources": {**resources, "checkpoint_every": 1},
    }


@pytest.fixture(scope="module")
def smoke_run(mirror, tmp_path_factory):
    wf = copy_workflow(tmp_path_factory.mktemp("smoke") / "wf")
    (wf / "cpu.yaml").write_text(yaml.safe_dump(cpu_overrides(*mirror)))
    snakemake(wf, "--cores", "2", "all", "--configfile", "config/config.yaml",
              "config/paper_smoke.yaml", "cpu.yaml", timeout=1800)
    return wf


def test_download_and_prepare_the_real_format(smoke_run, mirror):
    archive = smoke_run / "resources" / "downloads" / "cifar10" / "cifar-10-python.tar.gz"
    assert archive.read_bytes() == mirror[1].read_bytes()
    manifest = json.loads((smoke_run / "results" / "data" / "cifar10" /
                           "manifest.json").read_text())
    assert manifest["sizes"] == {"train": 80, "val": 20, "test": 40}
    assert tuple(manifest["input_shape"]) == (3, 32, 32) and manifest["num_classes"] == 10


def test_every_method_on_both_paper_networks_is_trained_and_measured(smoke_run):
    df = pd.read_csv(smoke_run / "results" / "metrics.csv", keep_default_na=False)
    networks = df[["arch", "method", "param", "gen"]].drop_duplicates()
    grid = G.grid(_config(smoke_run))
    assert len(networks) == len(grid) and len(df) == 3 * len(grid)  # 3 splits each
    for arch in ARCHS:
        assert set(networks.loc[networks.arch == arch, "method"]) == METHODS, arch
    for col in ("accuracy", "nll", "ece", "entropy", "cd_std_max"):
        assert df[col].map(math.isfinite).all(), col
    for run_json in (smoke_run / "results" / "cifar10").rglob("run.json"):
        record = json.loads(run_json.read_text())
        assert record["device"] == "cpu" and record["run"]["train"]["epochs"] == 1
        assert record["run"]["train"]["precision"] == "fp32"  # the smoke config's choice
        assert record["run"]["arch"] in ARCHS


def test_renders_and_epoch_lines(smoke_run):
    for name in ("e3_methods.md", "claims.csv", "e1_generations.png", "e4_reliability.png"):
        assert (smoke_run / "figures" / name).stat().st_size > 0, name
    logs = list((smoke_run / "logs" / "train").rglob("*.log"))
    assert len(logs) == len(G.grid(_config(smoke_run)))
    for log in logs:
        assert " · epoch 1/1 · loss " in log.read_text(), log

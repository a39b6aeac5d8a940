"""The GPU check (ci/gpu_check.sh, selfdistill.gpu_check) on a machine without CUDA: the skip
line, the summary and its pass/fail logic on fabricated results, the fabricated CIFAR-10
archive read by the real source, and a CPU dry run of the in-process checks."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
import torch

from selfdistill import gpu_check
from selfdistill.bench import method_cases
from selfdistill.data import prepare_dataset
from selfdistill.gpu_check import Check, overall, write_summary

from ..conftest import REPO

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")


@no_cuda
def test_script_without_cuda_prints_the_skip_line_and_exits_0(tmp_path):
    proc = subprocess.run(["bash", str(REPO / "ci" / "gpu_check.sh")], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "OUT": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "skipped: no CUDA device\n"
    assert not (tmp_path / "gpu_check").exists()  # nothing ran, nothing written


@no_cuda
def test_module_without_cuda_prints_the_skip_line(tmp_path, capsys):
    assert gpu_check.main(["--out", str(tmp_path / "g")]) == 0
    assert capsys.readouterr().out == "skipped: no CUDA device\n"


def fabricated() -> list[Check]:
    return [Check("workflow", True, {"wall_s": 61.5, "images_per_s": {"resnet34/ce": 4100.0}},
                  "10 networks", 61.5),
            Check("resume", False, {"metrics_identical": False}, "metrics.csv DIFFERS", 80.0),
            Check("slot_locks", None, {}, "both jobs ran on the CPU", 5.0)]


def test_summary_has_a_line_per_check_every_figure_and_the_overall_verdict(tmp_path):
    lines = write_summary(tmp_path, fabricated(), {"torch": "x", "gpu": "fake"})
    assert lines == ["PASS workflow: 10 networks", "FAIL resume: metrics.csv DIFFERS",
                     "SKIP slot_locks: both jobs ran on the CPU",
                     "FAIL overall: 1 passed, 1 failed, 1 skipped"]
    record = json.loads((tmp_path / "summary.json").read_text())
    assert record["passed"] is False and record["environment"]["gpu"] == "fake"
    by_name = {c["name"]: c for c in record["checks"]}
    assert by_name["workflow"]["figures"]["images_per_s"] == {"resnet34/ce": 4100.0}
    assert [c["status"] for c in record["checks"]] == ["PASS", "FAIL", "SKIP"]
    md = (tmp_path / "summary.md").read_text()
    assert all(line in md for line in lines)
    assert "- images_per_s: resnet34/ce 4100" in md and "## resume: FAIL (80 s)" in md


@pytest.mark.parametrize("statuses, verdict", [
    ((True, True), True), ((True, None), True), ((True, False), False),
    ((None, None), False),  # nothing measured is no pass
])
def test_overall_verdict(statuses, verdict):
    assert overall([Check(str(i), s) for i, s in enumerate(statuses)]) is verdict


def test_a_crashing_check_is_a_failed_check_with_its_error():
    def boom() -> Check:
        raise RuntimeError("CUDA error: an illegal memory access")

    check = gpu_check.timed("compile", boom)
    assert check.passed is False and check.name == "compile"
    assert "RuntimeError: CUDA error: an illegal memory access" in check.detail
    assert "boom" in check.figures["traceback"]


def test_fabricated_cifar10_is_read_by_the_real_source(tmp_path):
    """The archive the workflow check serves from its local mirror, checksums as overridden
    by the overlay, downloaded and prepared by the cifar10 source."""
    archive = tmp_path / "mirror" / "cifar-10-python.tar.gz"
    sums = gpu_check.fabricate_cifar10(archive, per_class=10)
    block = gpu_check.overlay(archive.parent, sums, torch.device("cpu"),
                              gpu_check.CPU_SIZES)["datasets"]["cifar10"]
    manifest = prepare_dataset("cifar10", block, tmp_path / "data", tmp_path / "downloads")
    assert manifest["sizes"] == {"train": 80, "val": 20, "test": 20}
    assert tuple(manifest["input_shape"]) == (3, 32, 32) and manifest["num_classes"] == 10


def test_overlay_asks_for_the_default_mode_on_cuda(tmp_path):
    cfg = gpu_check.overlay(tmp_path, {"sha256": "a", "md5": "b"}, torch.device("cuda"),
                            gpu_check.GPU_SIZES)
    assert cfg["execution"]["device"] == "cuda" and cfg["execution"]["precision"] == "fp32"
    assert cfg["execution"]["deterministic"] is True
    assert "train" not in cfg and "experiments" not in cfg  # paper_smoke.yaml's own recipe
    assert "--resources" in gpu_check.smoke_command(torch.device("cuda"))


@pytest.mark.slow
def test_cpu_dry_run_of_the_in_process_checks(tmp_path):
    """host_sync and precision at CPU sizes: they run to the end; what needs CUDA is SKIP."""
    checks = gpu_check.run_checks(tmp_path, torch.device("cpu"), gpu_check.CPU_SIZES,
                                  ("host_sync", "precision"))
    assert [(c.name, c.passed) for c in checks] == [("host_sync", None), ("precision", True)]
    # every objective path: images in three precisions, signals in fp32
    assert checks[0].figures == {"step_loops": 4 * len(method_cases()), "failures": 0}
    record = json.loads((tmp_path / "summary.json").read_text())
    assert record["passed"] is True
    assert (tmp_path / "precision.csv").exists()

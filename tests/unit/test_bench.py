"""The benchmark runs at CI scale, times fit's own step and reports recomputable ratios."""

import csv

import pytest

from selfdistill import bench


@pytest.mark.slow
def test_bench_small_writes_outputs(tmp_path):
    bench.run_benchmark(tmp_path, rounds=1, steps=3, small=True)
    for name in ("data_only_mnist1d", "data_path_mnist1d", "full_step_mnist1d",
                 "data_only_cifar", "data_path_cifar", "full_step_cifar", "method_cost_mnist1d"):
        assert (tmp_path / f"{name}.csv").exists()
    assert not (tmp_path / "faithfulness.csv").exists()
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


@pytest.mark.parametrize("method", ["ce", "bs"])
def test_our_step_runs_fits_train_step(monkeypatch, method):
    """Our variant's every optimiser step is selfdistill.train.train_step (the step fit
    runs), with the batch's indices exactly when the objective may cache per example."""
    calls = []
    real = bench.train_step

    def spy(model, objective, opt, xb, yb, idx=None, precision="fp32", forward=None):
        calls.append((xb.shape[0], idx is not None, precision))
        return real(model, objective, opt, xb, yb, idx, precision, forward)

    monkeypatch.setattr(bench, "train_step", spy)
    step = bench.our_step("mnist1d", "cnn1d", steps=2, objective=method, batch=16)
    assert step() == 32
    assert calls == [(16, True, "bf16"), (16, True, "bf16")]  # MNIST-1D: no augmentation


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


def test_flops_per_image_counts_forward_and_backward():
    """mlp on 40 inputs: 3 linear layers; fwd 2*MACs, bwd 2x fwd (input + weight grads),
    except the first layer's input gradient, which autograd skips (input needs no grad)."""
    macs = 40 * 128 + 128 * 128 + 128 * 10
    first_input_grad = 40 * 128
    want = 2 * macs + 2 * (2 * macs - first_input_grad)
    assert bench.flops_per_image("mlp", (1, 40), 10, batch=4) == want


@pytest.mark.parametrize("kind, arch, objective", [("mnist1d", "cnn1d", "sd"),
                                                   ("cifar", "cnn_digits", "bs")])
def test_precision_modes_train_from_one_init_on_one_batch_set_and_agree_on_cpu(kind, arch,
                                                                             objective):
    """The precision suite's core: each mode trains a fresh copy of the same initial network
    on the same batches (no state carried from one mode to the next). On the CPU all three
    modes are plain fp32, so their trajectories are equal bit for bit, and equal to a replay
    with fit's train_step."""
    import copy

    import torch

    traj = bench.precision_trajectories(kind, arch, steps=4, objective=objective, batch=16)
    assert list(traj) == ["fp32", "tf32", "bf16"]
    fp32 = traj["fp32"]["losses"]
    assert len(fp32) == 4 and len(set(fp32)) == 4  # the network trains: every loss differs
    assert traj["tf32"]["losses"] == fp32 and traj["bf16"]["losses"] == fp32
    batches, k = bench.precision_batches(kind, 4, 16, torch.device("cpu"))
    torch.manual_seed(0)
    model = bench.build_model(arch, k, tuple(batches[0][0].shape[1:]))
    if batches[0][0].dim() == 4:
        model.to(memory_format=torch.channels_last)
    obj = bench._objective(objective, arch, k, tuple(batches[0][0].shape[1:]))
    replay = bench.trajectory(copy.deepcopy(model), obj, batches, "fp32")[0]
    assert replay == fp32
    rows = {r["precision"]: r for r in bench.precision_agreement(traj)}
    for mode in ("fp32", "tf32", "bf16"):
        assert rows[mode]["max_abs_loss_diff"] == 0 and rows[mode]["final_loss_diff"] == 0
        assert rows[mode]["steps"] == 4 and rows[mode]["images_per_s"] > 0


def test_precision_agreement_measures_against_fp32():
    traj = {"fp32": {"losses": [2.0, 1.5, 1.0], "seconds": 2.0, "images": 100},
            "bf16": {"losses": [2.0, 1.75, 0.5], "seconds": 0.5, "images": 100}}
    bf16 = bench.precision_agreement(traj)[1]
    assert bf16["max_abs_loss_diff"] == 0.5 and bf16["final_loss_diff"] == -0.5
    assert bf16["images_per_s"] == 200 and bf16["speedup_vs_fp32"] == 4


def test_precision_only_needs_cuda(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    assert bench.main(["--precision-only"]) == 1
    assert "needs CUDA" in capsys.readouterr().err


def test_step_params_are_the_registry_sweeps_at_the_default_configs_compare_points():
    """One strength per swept method, equal to config/config.yaml's compare point."""
    import yaml

    from selfdistill.methods import SWEPT

    from ..conftest import REPO

    compare = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["compare"]
    assert set(bench.STEP_PARAMS) == {m.sweep_key for m in SWEPT}
    assert all(bench.STEP_PARAMS[k] == float(compare[k]) for k in bench.STEP_PARAMS)


def test_method_cases_cover_every_method_and_option_branch():
    """Every registered method, every choice of a text option, every boolean option flipped;
    each case builds through the registry."""
    from selfdistill.methods import METHODS

    cases = bench.method_cases()
    assert {c.method for c in cases} == set(METHODS)
    assert {("ls", "uniform"), ("ls", "others")} <= {
        (c.method, c.options.get("spread", "others")) for c in cases if c.method == "ls"}
    assert {k for c in cases if c.method == "sd" for k in c.options} == {
        "student_temperature", "t_squared"}
    assert len({c.name for c in cases}) == len(cases)
    for case in cases:
        obj = bench.build_objective(case, "cnn1d", 10, (1, 40))
        assert type(obj).__name__ == METHODS[case.method].objective_name

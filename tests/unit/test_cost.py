"""GPU-hour estimates (selfdistill.cost): FLOP and operator counts, the per-network
arithmetic, network counts of the paper grid."""

import math
from dataclasses import fields

import pytest
import yaml

from selfdistill.cost import (
    EVAL_BATCH,
    ArchCost,
    gpu_hours,
    markdown,
    measure_arch,
    merge_configs,
)
from selfdistill.train import TrainConfig

from ..conftest import REPO

FAKE = ArchCost(train_flops=3e9, forward_flops=1e9, step_ops=400, forward_ops=150)


def one_experiment(epochs=3, seeds=(0, 1), generations=2) -> dict:
    return {
        "datasets": {"c10": {"source": "cifar10", "val_size": 5000, "split_seed": 0}},
        "train": {"epochs": epochs, "batch_size": 128, "milestones": [1]},
        "sweeps": {"ls_eps": [0.1, 0.2], "er_beta": [0.3], "bs_a": [3]},
        "generations": generations, "seeds": list(seeds), "resources": {"gpu": 1},
        "experiments": [{"dataset": "c10", "arch": "resnet34"}],
    }


def test_mlp_flops_match_a_hand_count():
    # 64 -> 128 -> 128 -> 10 linear layers; a multiply-add is 2 FLOPs
    layers = [64 * 128, 128 * 128, 128 * 10]
    cost = measure_arch("mlp", (1, 8, 8), 10)
    assert cost.forward_flops == 2 * sum(layers)
    # backward: weight gradients of every layer, input gradients of all but the first
    assert cost.train_flops == 2 * sum(layers) + 2 * sum(layers) + 2 * sum(layers[1:])
    # 3 linear + 2 ReLU at least; the backward dispatches more than the forward
    assert 5 <= cost.forward_ops < cost.step_ops


def test_hours_are_the_larger_of_flop_time_and_launch_floor_per_network():
    peaks, util, op_s = {"slow": 10e12, "fast": 1000e12}, {"u": 0.5}, 1e-5
    table = gpu_hours(one_experiment(), lambda *a: FAKE, peaks, util, op_s)
    n_train, n_val, n_test, epochs = 45000, 5000, 10000, 3
    steps, val_b = math.ceil(n_train / 128), math.ceil(n_val / EVAL_BATCH)
    final_b = sum(math.ceil(n / EVAL_BATCH) for n in (n_train, n_val, n_test))
    groups = {0: 2 * (1 + 2 + 1), 1: 2 * (2 + 1)}  # extra forwards -> networks: CE/LS/ER; SD/BS
    for precision, peak in peaks.items():
        row = table[(table.arch == "resnet34") & (table.precision == precision)].iloc[0]
        flops = {a: epochs * (n_train * (3e9 + a * 1e9) + n_val * 1e9) +
                 (n_train + n_val + n_test) * 1e9 for a in groups}
        ops = {a: epochs * (steps * (400 + a * 150) + val_b * 150) + final_b * 150
               for a in groups}
        assert row.networks == sum(groups.values())
        assert row.pflop == pytest.approx(sum(n * flops[a] for a, n in groups.items()) / 1e15)
        assert row.floor_h == pytest.approx(sum(n * ops[a] * op_s for a, n in groups.items())
                                            / 3600)
        assert row.flop_h_u == pytest.approx(row.pflop * 1e15 / (peak * 0.5) / 3600)
        want = sum(n * max(flops[a] / (peak * 0.5), ops[a] * op_s) for a, n in groups.items())
        assert row.gpu_h_u == pytest.approx(want / 3600)
    slow, fast = (table[table.precision == p].iloc[0] for p in ("slow", "fast"))
    assert slow.gpu_h_u == pytest.approx(slow.flop_h_u)  # compute-bound at 10 TFLOP/s
    assert fast.gpu_h_u == pytest.approx(fast.floor_h)  # launch-bound at 1 PFLOP/s


def test_bf16_prices_only_the_student_at_bf16_and_the_other_forwards_at_tf32():
    """bf16 mode's autocast covers the student's forward and loss; SD's teacher, BS's ranking
    network and the evaluation passes run in fp32 with TF32 kernels, so they are priced at
    the TF32 peak. fp32 and tf32 price everything at their own peak."""
    peaks, util = {"fp32": 50e12, "tf32": 400e12, "bf16": 800e12}, {"u": 1.0}
    table = gpu_hours(one_experiment(epochs=1, seeds=(0,), generations=1), lambda *a: FAKE,
                      peaks, util, op_s=0.0)
    n_train, n_val, n_test = 45000, 5000, 10000
    student = n_train * 3e9
    # networks of one seed: CE, LS x2, ER (no extra forward); SD gen 1, BS (one each)
    other = {0: (n_val + n_train + n_val + n_test) * 1e9,
             1: (n_train + n_val + n_train + n_val + n_test) * 1e9}
    counts = {0: 4, 1: 2}
    for precision, outside in (("fp32", "fp32"), ("tf32", "tf32"), ("bf16", "tf32")):
        row = table[(table.arch == "resnet34") & (table.precision == precision)].iloc[0]
        want = sum(n * (student / peaks[precision] + other[a] / peaks[outside])
                   for a, n in counts.items())
        assert row.gpu_h_u == pytest.approx(want / 3600), precision
    bf16 = table[(table.arch == "resnet34") & (table.precision == "bf16")].iloc[0]
    all_bf16 = sum(n * (student + other[a]) for a, n in counts.items()) / peaks["bf16"]
    assert bf16.gpu_h_u > 1.1 * all_bf16 / 3600  # the old pricing was optimistic


def test_paper_grid_network_counts_and_totals():
    with open(REPO / "config" / "config.yaml") as a, open(REPO / "config" / "paper.yaml") as b:
        config = merge_configs(yaml.safe_load(a), yaml.safe_load(b))
    table = gpu_hours(config, lambda *a: FAKE)
    n_seeds, sweeps = len(config["seeds"]), config["sweeps"]
    for block in config["experiments"]:
        gens = block.get("generations", config["generations"])
        points = sum(len(v) for v in {**sweeps, **block.get("sweeps", {})}.values())
        got = table[(table.dataset == block["dataset"]) & (table.arch == block["arch"])]
        assert list(got.networks) == [n_seeds * (1 + gens + points)] * 3
    per = table[table.dataset != "all"].groupby("precision").sum(numeric_only=True)
    total = table[table.dataset == "all"].set_index("precision")
    for col in ("networks", "pflop", "floor_h", "gpu_h_35", "gpu_h_20", "gpu_h_10"):
        assert total[col].to_dict() == pytest.approx(per[col].to_dict())
    assert ((table.gpu_h_10 >= table.gpu_h_20) & (table.gpu_h_20 >= table.gpu_h_35)).all()
    lines = markdown(table).splitlines()
    assert len(lines) == 2 + len(table) and lines[0].startswith("| dataset | arch | precision")


def test_unknown_source_names_the_key():
    config = one_experiment()
    config["datasets"]["c10"]["source"] = "mnist1d"
    with pytest.raises(ValueError, match=r"datasets\.c10\.source: 'mnist1d'.*SOURCE_SIZES"):
        gpu_hours(config, lambda *a: FAKE)


def test_merge_replaces_lists_and_merges_mappings():
    merged = merge_configs({"a": {"x": 1, "y": [1, 2]}, "b": 1}, {"a": {"y": [3]}, "c": 2})
    assert merged == {"a": {"x": 1, "y": [3]}, "b": 1, "c": 2}


def test_eval_batch_is_the_training_default():
    default = next(f.default for f in fields(TrainConfig) if f.name == "eval_batch_size")
    assert default == EVAL_BATCH

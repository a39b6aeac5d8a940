"""Matched-entropy baselines (methods §5 E2, §6 claim 3): interpolation in log-strength,
the round decisions, validation entropy only, and the matched table."""

import math

import pandas as pd
import pytest

from selfdistill import grid as G
from selfdistill import matching as M
from selfdistill.io import read_json

SEEDS = (0, 1, 2)


def rows(method, param, entropies, split="val", gen=0, accuracy=0.9):
    """One metric row per seed of one run (only the columns matching reads)."""
    return [{"dataset": "d", "arch": "a", "method": method, "param": param, "seed": s,
             "gen": gen, "split": split, "entropy": h, "accuracy": accuracy}
            for s, h in zip(SEEDS, entropies, strict=True)]


def table(*groups):
    return pd.DataFrame([r for g in groups for r in g])


def sd(target, split="val"):
    # seeds scattered around the target: the target is their mean
    return rows("sd", "", [target - 0.02, target, target + 0.02], split=split, gen=1)


def test_interpolation_is_exact_for_entropy_linear_in_log_strength():
    h = {p: 1.0 + 0.3 * math.log(p) for p in (0.05, 0.1, 0.2)}
    target = 1.0 + 0.3 * math.log(0.137)
    assert M.interpolate(h, target) == pytest.approx(0.137, rel=1e-12)
    # a linear-in-strength interpolation would land elsewhere
    lin = 0.1 + (target - h[0.1]) * (0.2 - 0.1) / (h[0.2] - h[0.1])
    assert abs(lin - 0.137) > 1e-3


def test_interpolation_needs_a_bracket_and_takes_the_tightest_one():
    h = {0.1: 1.0, 0.3: 1.5, 1.0: 1.2}  # not monotone: two pairs bracket 1.3
    # (0.3, 1.0) spans 0.3 nats, (0.1, 0.3) spans 0.5: the tighter pair is used
    x = M.interpolate(h, 1.3)
    assert 0.3 < x < 1.0
    assert M.interpolate(h, 2.0) is None
    assert M.interpolate({0.1: 1.0}, 1.0) is None


def test_choose_statuses():
    pts = {0.1: 1.0, 0.2: 1.4}
    assert M.choose(pts, 1.41, 0.05) == {"status": "matched", "param": "0.2",
                                         "gap": pytest.approx(-0.01)}
    train = M.choose(pts, 1.2, 0.05)
    assert train["status"] == "train"
    assert train["param"] == G.path_param(M.rounded_strength(M.interpolate(pts, 1.2)))
    assert M.choose(pts, 2.0, 0.05)["status"] == "no bracket"
    again = M.choose(pts, 1.2, 0.05, trained=[float(train["param"])])
    assert again["status"] == "stalled"


def test_a_round_uses_validation_entropy_only():
    """The test split's entropies and every accuracy are ignored: changing them changes
    nothing; changing a validation entropy changes the choice."""
    val = table(sd(1.2), rows("ls", "0.1", [1.0] * 3), rows("ls", "0.2", [1.4] * 3),
                rows("er", "0.3", [1.19] * 3))
    test = table(sd(3.0, "test"), rows("ls", "0.1", [5.0] * 3, "test", accuracy=0.1),
                 rows("ls", "0.2", [0.1] * 3, "test", accuracy=0.99))
    a = M.match_round(val, "d", "a", 1, 0.05, 1)
    b = M.match_round(pd.concat([val, test]), "d", "a", 1, 0.05, 1)
    assert a == b
    assert a["target_entropy"] == pytest.approx(1.2)
    assert a["methods"]["ls"]["status"] == "train"
    assert a["methods"]["er"] == {**a["methods"]["er"], "status": "matched", "param": "0.3"}
    shifted = val.copy()
    shifted.loc[(shifted["method"] == "ls") & (shifted["param"] == "0.2"), "entropy"] = 1.3
    assert M.match_round(shifted, "d", "a", 1, 0.05, 1)["methods"]["ls"]["param"] != \
        a["methods"]["ls"]["param"]


def test_second_round_brackets_with_the_first_rounds_point(tmp_path):
    # entropy curves in log-strength, so round 1's log-linear guess misses and round 2
    # narrows the bracket with round 1's measured point
    def h(p):
        return 1.0 + 0.5 * math.log10(p) ** 2 * (1 if p < 1 else 0) + 0.1 * p

    sweep = [0.01, 1.0]
    target = h(0.2)
    base = table(sd(target), *[rows("ls", G.path_param(p), [h(p)] * 3) for p in sweep],
                 rows("er", "0.3", [target + 0.5] * 3))
    r1 = M.match_round(base, "d", "a", 1, 0.01, 1)
    p1 = r1["methods"]["ls"]["param"]
    assert r1["methods"]["ls"]["status"] == "train"
    assert r1["methods"]["er"]["status"] == "no bracket"
    assert M.to_train(r1) == [("ls", p1)]
    second = pd.concat([base, table(rows("ls", p1, [h(float(p1))] * 3))])
    r2 = M.match_round(second, "d", "a", 1, 0.01, 2, previous=r1)
    p2 = r2["methods"]["ls"]["param"]
    assert r2["methods"]["ls"]["trained"] == [float(p1), float(p2)]
    assert abs(h(float(p2)) - target) < abs(h(float(p1)) - target)
    # the table picks the measured point closest to the target, across rounds
    final = pd.concat([second, table(rows("ls", p2, [h(float(p2))] * 3))])
    M.write_round(r2, tmp_path / "round2.json")
    assert read_json(tmp_path / "round2.json") == r2
    out = M.matched_table([tmp_path / "round2.json"], final, tmp_path / "matched.csv")
    ls = out[out["method"] == "ls"].iloc[0]
    assert ls["param"] == p2 and ls["status"] == "interpolated"
    assert ls["gap"] == pytest.approx(h(float(p2)) - target)
    er = out[out["method"] == "er"].iloc[0]
    assert er["param"] == "" and math.isnan(er["gap"]) and er["status"] == "no bracket"
    assert list(pd.read_csv(tmp_path / "matched.csv").columns) == M.MATCHED_COLUMNS


def test_no_sd_rows_is_a_named_error():
    with pytest.raises(ValueError, match="no SD generation 1 rows on the val split for d/a"):
        M.match_round(table(rows("ls", "0.1", [1.0] * 3)), "d", "a", 1, 0.05, 1)


@pytest.mark.parametrize("name", G.RESERVED_NAMES)
def test_dataset_names_that_are_folders_of_results_are_refused(name):
    config = {"datasets": {name: {"source": "mnist1d", "val_size": 10, "split_seed": 0}},
              "experiments": [{"dataset": name, "arch": "mlp"}]}
    with pytest.raises(ValueError, match=rf"datasets\.{name}: '{name}' is a folder"):
        G.validate_config(config)


def test_matched_runs_live_under_results_matched():
    run = G.Run("d", "a", "ls", "0.137", 2, 0)
    assert G.matched_dir(run) == "results/matched/d/a/ls/0.137/seed2/gen0"

"""methods §4 metrics against independent implementations (torchmetrics, scipy)."""

import numpy as np
import pytest
import torch
from scipy.stats import entropy as scipy_entropy
from torchmetrics.functional.classification import multiclass_calibration_error

from selfdistill import metrics


def random_probs(n=500, k=7, seed=0, sharp=3.0):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, k)) * sharp
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    y = rng.integers(0, k, size=n)
    # make predictions better than chance so accuracy/calibration are non-trivial
    y[: n // 2] = p[: n // 2].argmax(1)
    return p, y


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ece_matches_torchmetrics(seed):
    p, y = random_probs(seed=seed)
    ours = metrics.ece(p, y, n_bins=20)
    theirs = multiclass_calibration_error(torch.tensor(p), torch.tensor(y), num_classes=p.shape[1],
                                          n_bins=20, norm="l1").item()
    assert ours == pytest.approx(theirs, abs=1e-6)
    assert 0 < ours < 1


def test_entropy_matches_scipy():
    p, _ = random_probs()
    assert metrics.mean_entropy(p) == pytest.approx(float(np.mean(scipy_entropy(p, axis=1))),
                                                    abs=1e-12)


def test_entropy_handles_exact_zeros():
    p = np.array([[1.0, 0.0], [0.5, 0.5]])
    assert metrics.mean_entropy(p) == pytest.approx(np.log(2) / 2)


def test_accuracy_and_nll_by_hand():
    p = np.array([[0.7, 0.2, 0.1], [0.3, 0.3, 0.4], [0.1, 0.8, 0.1]])
    y = np.array([0, 1, 1])
    assert metrics.accuracy(p, y) == pytest.approx(2 / 3)
    assert metrics.nll(p, y) == pytest.approx(-(np.log(0.7) + np.log(0.3) + np.log(0.8)) / 3)


def test_accepts_tensors():
    p, y = random_probs(n=50)
    assert metrics.accuracy(torch.tensor(p), torch.tensor(y)) == metrics.accuracy(p, y)


def test_reliability_bins_membership_lower_open_upper_closed():
    # confidence exactly 0.5 belongs to bin (0.45, 0.5] = index 9 with 20 bins
    p = np.array([[0.5, 0.5], [0.55, 0.45], [1.0, 0.0]])
    y = np.array([0, 0, 1])
    bins = metrics.reliability_bins(p, y, 20)
    assert bins["count"][9] == 1 and bins["count"][10] == 1 and bins["count"][19] == 1
    assert bins["count"].sum() == 3
    assert bins["accuracy"][19] == 0.0 and bins["confidence"][19] == 1.0


def test_confidence_diversity_by_hand():
    p = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.55, 0.45]])
    y = np.array([0, 1, 1, 0])
    cd = metrics.confidence_diversity(p, y, n_bins=4)
    conf_max = np.array([0.9, 0.6, 0.8, 0.55])
    conf_true = np.array([0.9, 0.4, 0.8, 0.55])
    # 4 bins on [0,1]: max-conf -> bins 3, 2, 3, 2 -> histogram (0, 0, 2, 2)
    assert cd["cd_entropy_max"] == pytest.approx(np.log(2))
    # true-conf -> bins 3, 1, 3, 2 -> (0, 1, 1, 2)
    assert cd["cd_entropy_true"] == pytest.approx(float(scipy_entropy([1, 1, 2])))
    assert cd["cd_std_max"] == pytest.approx(np.std(conf_max))
    assert cd["cd_std_true"] == pytest.approx(np.std(conf_true))
    assert set(cd) == {"cd_entropy_max", "cd_entropy_true", "cd_std_max", "cd_std_true"}


def test_summarize_has_spec_columns():
    p, y = random_probs(n=100)
    row = metrics.summarize(p, y)
    assert set(row) == {"accuracy", "nll", "ece", "entropy", "cd_entropy_max",
                        "cd_entropy_true", "cd_std_max", "cd_std_true", "top5_accuracy"}
    assert all(np.isfinite(v) for v in row.values())


def test_shape_errors_are_named():
    with pytest.raises(ValueError, match="probs"):
        metrics.accuracy(np.ones((3, 2)), np.ones(4, dtype=int))


@pytest.mark.parametrize("k", [1, 3, 5])
def test_top_k_accuracy_matches_torchmetrics(k):
    from torchmetrics.functional.classification import multiclass_accuracy

    p, y = random_probs(n=400, k=10, seed=k)
    theirs = multiclass_accuracy(torch.tensor(p), torch.tensor(y), num_classes=10, top_k=k,
                                 average="micro").item()
    assert metrics.top_k_accuracy(p, y, k) == pytest.approx(theirs, abs=1e-6)  # theirs: float32
    if k == 1:
        assert metrics.top_k_accuracy(p, y, 1) == metrics.accuracy(p, y)


def test_top_k_accuracy_counts_the_rank_of_the_true_class():
    p = np.array([[0.5, 0.3, 0.2], [0.1, 0.2, 0.7], [0.2, 0.2, 0.6]])
    y = np.array([2, 0, 1])  # ranks 3, 3, 2 (a tie with class 0 counts for the true class)
    assert metrics.top_k_accuracy(p, y, 1) == 0.0
    assert metrics.top_k_accuracy(p, y, 2) == pytest.approx(1 / 3)
    assert metrics.top_k_accuracy(p, y, 3) == 1.0
    assert metrics.top_k_accuracy(p, y, 5) == 1.0  # K <= k: every example
    with pytest.raises(ValueError, match="k >= 1"):
        metrics.top_k_accuracy(p, y, 0)


def test_per_class_accuracy_matches_torchmetrics():
    from torchmetrics.functional.classification import multiclass_accuracy

    p, y = random_probs(n=300, k=6, seed=4)
    y[y == 5] = 4  # class 5 has no examples
    table = metrics.per_class_accuracy(p, y)
    theirs = multiclass_accuracy(torch.tensor(p), torch.tensor(y), num_classes=6,
                                 average="none").numpy()
    assert np.allclose(table["accuracy"][:5], theirs[:5], atol=1e-7)
    assert np.isnan(table["accuracy"][5]) and table["n"][5] == 0
    assert table["n"].sum() == len(y)
    assert table["correct"].sum() == int(round(metrics.accuracy(p, y) * len(y)))

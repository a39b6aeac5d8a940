"""Evaluation metrics, methods §4 (public names of methods §7).

Inputs are probabilities ``[n, K]`` and integer targets ``[n]``, as numpy arrays or torch
tensors; outputs are Python floats. Implemented in numpy (float64) so that the measure
rule does not need to import torch.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "accuracy",
    "confidence_diversity",
    "ece",
    "histogram_entropy",
    "mean_entropy",
    "nll",
    "per_class_accuracy",
    "reliability_bins",
    "softmax",
    "summarize",
    "top_k_accuracy",
]


def _array(x: Any, dtype: Any = np.float64) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor, without importing torch
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def _check(probs: Any, targets: Any) -> tuple[np.ndarray, np.ndarray]:
    p, y = _array(probs), _array(targets, np.int64)
    if p.ndim != 2 or y.ndim != 1 or p.shape[0] != y.shape[0]:
        raise ValueError(f"expected probs [n, K] and targets [n], got {p.shape} and {y.shape}")
    return p, y


def softmax(logits: Any) -> np.ndarray:
    """Row softmax in float64 (for predictions saved as logits)."""
    z = _array(logits)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def accuracy(probs: Any, targets: Any) -> float:
    """Top-1 accuracy as a fraction (methods §4)."""
    p, y = _check(probs, targets)
    return float(np.mean(p.argmax(axis=1) == y))


def top_k_accuracy(probs: Any, targets: Any, k: int = 5) -> float:
    """Top-k accuracy as a fraction: the true class is among the k most probable ones
    (fewer than k classes have a higher probability; ties count for the true class, and
    with K <= k classes every example counts). k = 1 is :func:`accuracy` up to ties."""
    p, y = _check(probs, targets)
    if k < 1:
        raise ValueError(f"top-k accuracy needs k >= 1, got {k}")
    p_y = p[np.arange(len(y)), y]  # [n]
    higher = (p > p_y[:, None]).sum(axis=1)  # [n] classes ranked above the true one
    return float(np.mean(higher < k))


def per_class_accuracy(probs: Any, targets: Any, num_classes: int | None = None
                       ) -> dict[str, np.ndarray]:
    """Top-1 accuracy of each true class c = 0..K-1 (K: ``num_classes``, else probs' width):
    ``n`` [K] examples of class c, ``correct`` [K] of them predicted c, ``accuracy`` [K]
    correct/n (NaN for a class without examples)."""
    p, y = _check(probs, targets)
    k = p.shape[1] if num_classes is None else num_classes
    n = np.bincount(y, minlength=k)[:k]
    correct = np.bincount(y[p.argmax(axis=1) == y], minlength=k)[:k]
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.where(n > 0, correct / np.maximum(n, 1), np.nan)
    return {"n": n, "correct": correct, "accuracy": acc}


def nll(probs: Any, targets: Any) -> float:
    """Mean -log p_y in nats (methods §4); p_y is floored at the smallest positive float64."""
    p, y = _check(probs, targets)
    p_y = np.maximum(p[np.arange(len(y)), y], np.finfo(np.float64).tiny)
    return float(-np.mean(np.log(p_y)))


def reliability_bins(probs: Any, targets: Any, n_bins: int = 20) -> dict[str, np.ndarray]:
    """Per-bin mean confidence, accuracy and count; confidence = max probability.

    ``n_bins`` equal-width bins over [0, 1], membership (lower, upper] (methods §4); a
    confidence of exactly 0 cannot occur for a probability vector with K >= 1.
    """
    p, y = _check(probs, targets)
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    count = np.bincount(idx, minlength=n_bins).astype(np.int64)
    safe = np.maximum(count, 1)
    return {
        "lower": edges[:-1],
        "upper": edges[1:],
        "confidence": np.bincount(idx, weights=conf, minlength=n_bins) / safe,
        "accuracy": np.bincount(idx, weights=correct, minlength=n_bins) / safe,
        "count": count,
    }


def ece(probs: Any, targets: Any, n_bins: int = 20) -> float:
    """Expected calibration error as a fraction: Σ_b (n_b/n)·|acc_b − conf_b| (methods §4)."""
    bins = reliability_bins(probs, targets, n_bins)
    n = bins["count"].sum()
    return float(np.sum(bins["count"] / n * np.abs(bins["accuracy"] - bins["confidence"])))


def mean_entropy(probs: Any) -> float:
    """Average predictive entropy, mean_i −Σ_k p_ik log p_ik, in nats (methods §4)."""
    p = _array(probs)
    terms = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    return float(-terms.sum(axis=1).mean())


def histogram_entropy(values: np.ndarray, n_bins: int = 20) -> float:
    """Entropy (nats) of the histogram of ``values`` over ``n_bins`` equal bins on [0, 1]."""
    counts, _ = np.histogram(np.clip(values, 0.0, 1.0), bins=n_bins, range=(0.0, 1.0))
    freq = counts[counts > 0] / counts.sum()
    return float(-(freq * np.log(freq)).sum())


def confidence_diversity(probs: Any, targets: Any, n_bins: int = 20) -> dict[str, float]:
    """Spread of confidences across instances (methods §4).

    For confidence = max probability (``_max``) and = true-class probability (``_true``):
    ``cd_entropy_*`` is the entropy of their histogram over ``n_bins`` bins on [0, 1],
    ``cd_std_*`` their standard deviation (population, ddof=0).
    """
    p, y = _check(probs, targets)
    confs = {"max": p.max(axis=1), "true": p[np.arange(len(y)), y]}
    out: dict[str, float] = {}
    for name, c in confs.items():
        out[f"cd_entropy_{name}"] = histogram_entropy(c, n_bins)
        out[f"cd_std_{name}"] = float(np.std(c))
    return out


def summarize(probs: Any, targets: Any, ece_bins: int = 20, cd_bins: int = 20) -> dict[str, float]:
    """Every methods §4 scalar for one split, keyed by the methods §7 column names."""
    row = {
        "accuracy": accuracy(probs, targets),
        "nll": nll(probs, targets),
        "ece": ece(probs, targets, ece_bins),
        "entropy": mean_entropy(probs),
    }
    row.update(confidence_diversity(probs, targets, cd_bins))
    row["top5_accuracy"] = top_k_accuracy(probs, targets, 5)  # the last column (docs/results.md)
    return row

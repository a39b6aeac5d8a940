"""Dataset preparation and loading (SPEC §2 validation hold-out, §5 embedded default).

A prepared dataset is a directory with ``train.npz``, ``val.npz``, ``test.npz`` (arrays
``x`` and ``y``) and ``manifest.json`` (sizes, class counts, seeds, shapes, normalisation,
sha256 of each file). Loading verifies every file against the manifest.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .io import read_json, sha256_file, write_json, write_npz

__all__ = [
    "PREPARERS",
    "SPLITS",
    "DataError",
    "Split",
    "load_manifest",
    "load_split",
    "prepare_dataset",
    "split_holdout",
]

SPLITS = ("train", "val", "test")


class DataError(RuntimeError):
    """A dataset file is missing, corrupted or inconsistent with its manifest."""


@dataclass(frozen=True)
class Split:
    """One split held in memory: inputs ``x`` [n, *input_shape] and int64 labels ``y`` [n]."""

    x: np.ndarray
    y: np.ndarray
    name: str = ""
    meta: Mapping[str, Any] = field(default_factory=dict)


def split_holdout(n: int, holdout: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of ``range(n)`` into (train indices, hold-out indices), both sorted."""
    if not 0 < holdout < n:
        raise ValueError(f"validation hold-out must be between 1 and {n - 1}, got {holdout}")
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[holdout:]), np.sort(perm[:holdout])


def _mnist1d_arrays(params: Mapping[str, Any]) -> tuple[np.ndarray, ...]:
    """MNIST-1D from the ``mnist1d`` generator, offline and deterministic.

    The generator reseeds numpy's and Python's global generators; their states are saved
    and restored around it so that nothing else is affected.
    """
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = int(params["num_samples"])
    args.train_split = float(params["train_fraction"])
    args.seed = int(params["generator_seed"])
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(args)
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    x, x_test = (np.asarray(a, dtype=np.float32)[:, None, :] for a in (data["x"], data["x_test"]))
    return x, np.asarray(data["y"], np.int64), x_test, np.asarray(data["y_test"], np.int64)


def _digits_arrays(params: Mapping[str, Any]) -> tuple[np.ndarray, ...]:
    """scikit-learn's 8×8 digits, scaled to [0, 1], seeded stratified train/test split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = (bunch.images.astype(np.float32) / 16.0)[:, None, :, :]  # [n, 1, 8, 8]
    y = bunch.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=float(params["test_fraction"]), random_state=int(params["generator_seed"]),
        stratify=y)
    return x_tr, y_tr, x_te, y_te


def _standardize(x_train: np.ndarray, *others: np.ndarray) -> tuple[list[np.ndarray], float, float]:
    mean, std = float(x_train.mean()), float(x_train.std())
    return [((a - mean) / std).astype(np.float32) for a in (x_train, *others)], mean, std


def prepare_embedded(name: str, params: Mapping[str, Any], out_dir: str | Path) -> dict[str, Any]:
    """Generate an embedded dataset, hold out a seeded validation split, write files + manifest."""
    source = params["source"]
    if source not in EMBEDDED:
        raise KeyError(f"datasets.{name}.source: unknown source {source!r}; "
                       f"known: {sorted(EMBEDDED)}")
    x_full, y_full, x_test, y_test = EMBEDDED[source](params)
    tr_idx, va_idx = split_holdout(len(y_full), int(params["val_size"]), int(params["split_seed"]))
    arrays = {"train": (x_full[tr_idx], y_full[tr_idx]), "val": (x_full[va_idx], y_full[va_idx]),
              "test": (x_test, y_test)}
    if params.get("standardize", False):
        (xtr, xva, xte), mean, std = _standardize(arrays["train"][0], arrays["val"][0], x_test)
        arrays = {"train": (xtr, arrays["train"][1]), "val": (xva, arrays["val"][1]),
                  "test": (xte, y_test)}
    num_classes = int(max(y.max() for _, y in arrays.values()) + 1)
    extra = {"val_indices_in_train_pool": va_idx.tolist()}
    return write_prepared(out_dir, name, arrays, num_classes, dict(params), extra)


def write_prepared(out_dir: str | Path, name: str,
                   arrays: Mapping[str, tuple[np.ndarray, np.ndarray]], num_classes: int,
                   params: Mapping[str, Any], extra: Mapping[str, Any] | None = None,
                   normalize: Mapping[str, list[float]] | None = None) -> dict[str, Any]:
    """Write ``{split}.npz`` files and ``manifest.json`` (written last: its presence means done)."""
    out = Path(out_dir)
    files: dict[str, str] = {}
    for split in SPLITS:
        x, y = arrays[split]
        write_npz(out / f"{split}.npz", x=x, y=y)
        files[f"{split}.npz"] = sha256_file(out / f"{split}.npz")
    manifest = {
        "dataset": name,
        "num_classes": num_classes,
        "input_shape": list(arrays["train"][0].shape[1:]),
        "dtype": str(arrays["train"][0].dtype),
        "sizes": {s: int(len(arrays[s][1])) for s in SPLITS},
        "class_counts": {s: np.bincount(arrays[s][1], minlength=num_classes).tolist()
                         for s in SPLITS},
        "params": dict(params),
        "normalize": dict(normalize) if normalize else None,
        "sha256": files,
        **(extra or {}),
    }
    write_json(out / "manifest.json", manifest)
    return manifest


def load_manifest(data_dir: str | Path) -> dict[str, Any]:
    path = Path(data_dir) / "manifest.json"
    if not path.exists():
        raise DataError(f"dataset manifest {path} is missing: run the prepare_dataset rule "
                        f"(snakemake {path}) before training.")
    return read_json(path)


def load_split(data_dir: str | Path, split: str, verify: bool = True) -> Split:
    """Load one split, checking its sha256 against the manifest first."""
    manifest = load_manifest(data_dir)
    path = Path(data_dir) / f"{split}.npz"
    if not path.exists():
        raise DataError(f"dataset file {path} is missing; delete {Path(data_dir)/'manifest.json'}"
                        f" and re-run the prepare_dataset rule to regenerate it.")
    if verify:
        expected, actual = manifest["sha256"][path.name], sha256_file(path)
        if expected != actual:
            raise DataError(f"dataset file {path} is corrupted: sha256 {actual} but the manifest "
                            f"expects {expected}. Delete {Path(data_dir)} and re-run the "
                            f"prepare_dataset rule.")
    with np.load(path) as npz:
        return Split(x=npz["x"], y=npz["y"].astype(np.int64), name=split, meta=manifest)


EMBEDDED: dict[str, Callable[[Mapping[str, Any]], tuple[np.ndarray, ...]]] = {
    "mnist1d": _mnist1d_arrays,
    "sklearn_digits": _digits_arrays,
}

PREPARERS: dict[str, Callable[[str, Mapping[str, Any], str | Path], dict[str, Any]]] = {
    "mnist1d": prepare_embedded,
    "sklearn_digits": prepare_embedded,
}


def prepare_dataset(name: str, params: Mapping[str, Any], out_dir: str | Path) -> dict[str, Any]:
    """Prepare dataset ``name`` described by config ``params`` (its ``source`` picks the preparer)."""
    source = params.get("source")
    if source not in PREPARERS:
        raise KeyError(f"datasets.{name}.source: unknown source {source!r}; known: {sorted(PREPARERS)}")
    return PREPARERS[source](name, params, out_dir)

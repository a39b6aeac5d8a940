"""scikit-learn's 8×8 digits (the second embedded dataset, methods §5): 1,797 images scaled to
[0, 1], a seeded stratified train/test split, optionally standardised with the training
mean/std; stored as float32 [n, 1, 8, 8]."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .keys import COMMON, Key, Source, augment_key, source_key
from .shared import hold_out, write_embedded

__all__ = ["SKLEARN_DIGITS", "prepare"]

NUM_IMAGES, NUM_CLASSES = 1797, 10  # sklearn.datasets.load_digits()


def _digits_arrays(opts: Mapping[str, Any]) -> tuple[np.ndarray, ...]:
    """scikit-learn's 8×8 digits, scaled to [0, 1], seeded stratified train/test split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = (bunch.images.astype(np.float32) / 16.0)[:, None, :, :]  # [n, 1, 8, 8]
    y = bunch.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=float(opts["test_fraction"]), random_state=int(opts["generator_seed"]),
        stratify=y)
    return x_tr, y_tr, x_te, y_te


def _standardize(x_train: np.ndarray, *others: np.ndarray) -> tuple[list[np.ndarray], float, float]:
    mean, std = float(x_train.mean()), float(x_train.std())
    return [((a - mean) / std).astype(np.float32) for a in (x_train, *others)], mean, std


def prepare(name: str, params: Mapping[str, Any], opts: Mapping[str, Any],
            out_dir: str | Path) -> dict[str, Any]:
    """Load the digits, hold out the methods §2 seeded validation split, optionally standardise
    every split with the training mean/std, write files + manifest."""
    x_pool, y_pool, x_test, y_test = _digits_arrays(opts)
    arrays, val_idx = hold_out((x_pool, y_pool), (x_test, y_test), opts)
    if opts["standardize"]:
        (xtr, xva, xte), _, _ = _standardize(arrays["train"][0], arrays["val"][0], x_test)
        arrays = {"train": (xtr, arrays["train"][1]), "val": (xva, arrays["val"][1]),
                  "test": (xte, y_test)}
    return write_embedded(name, params, out_dir, arrays, val_idx)


def _sizes(opts: Mapping[str, Any]) -> tuple[int, int]:
    """(train, test) sizes of scikit-learn's split: ``ceil(fraction * n)`` test images."""
    test = math.ceil(opts["test_fraction"] * NUM_IMAGES)
    return NUM_IMAGES - test, test


def _stratifiable(opts: Mapping[str, Any]) -> tuple[str, str] | None:
    """A stratified split needs at least one image of each class on both sides."""
    if min(_sizes(opts)) >= NUM_CLASSES:
        return None
    return ("test_fraction", f"{opts['test_fraction']} leaves fewer than {NUM_CLASSES} images "
            f"(one per class) on one side of the stratified split of {NUM_IMAGES}: use a "
            f"fraction between 0.01 and 0.99 (e.g. 0.25)")


SKLEARN_DIGITS = Source(
    name="sklearn_digits", prepare=prepare, downloads=False,
    keys={
        "source": source_key("sklearn_digits"),
        "test_fraction": Key("float", "share of the 1,797 images in the stratified test split",
                             default=0.25, low=0, high=1, open_low=True, open_high=True),
        "generator_seed": Key("int", "seed of the train/test split", default=0, low=0),
        **COMMON,
        "standardize": Key("bool", "standardise with the training mean/std", default=False),
        "augment": augment_key("crop_flip"),
    },
    train_pool=lambda opts: _sizes(opts)[0], pool_keys=("test_fraction",),
    checks=(_stratifiable,))

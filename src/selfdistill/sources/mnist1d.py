"""MNIST-1D from the ``mnist1d`` package's generator: offline, deterministic, the embedded
default (methods §5), stored as float32 [n, 1, 40] (the generator standardises it)."""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from .keys import COMMON, Key, Source, augment_key, source_key
from .shared import hold_out, write_embedded

__all__ = ["MNIST1D", "prepare"]

NUM_TEMPLATES = 10  # the generator makes num_samples // 10 examples of each of 10 digits


@contextmanager
def _fast_mnist1d_interpolation() -> Iterator[None]:
    """Swap ``mnist1d.transform.interpolate`` for an equal, faster one while generating.

    The generator resamples every example four times through ``scipy.interpolate.interp1d``
    (linear), whose constructor's checks are three quarters of generation time (about 12 s
    for the default 15,000 examples). For 1-D float input, ``interp1d`` evaluates with
    ``np.interp`` on the same ``linspace`` grids, so calling ``np.interp`` directly gives
    the same bits (tests/unit/test_train.py compares whole datasets) and draws nothing from
    the generator's random stream. Any other input goes to the package's own function.
    """
    import importlib

    # the package re-exports a function named ``transform``, so fetch the module itself
    transform = importlib.import_module("mnist1d.transform")
    original = transform.interpolate
    grids: dict[int, np.ndarray] = {}

    def grid(n: int) -> np.ndarray:
        if n not in grids:
            grids[n] = np.linspace(0, 1, n)
            grids[n].setflags(write=False)
        return grids[n]

    def interpolate(x: Any, n: int) -> np.ndarray:
        arr = np.asarray(x)
        if arr.ndim != 1 or arr.dtype not in (np.float64, np.int64) or len(arr) < 2:
            return original(x, n)
        return np.interp(grid(n), grid(len(arr)), arr.astype(np.float64, copy=False))

    transform.interpolate = interpolate
    try:
        yield
    finally:
        transform.interpolate = original


def _mnist1d_arrays(params: Mapping[str, Any]) -> tuple[np.ndarray, ...]:
    """MNIST-1D from the ``mnist1d`` generator, offline and deterministic:
    (x_pool [n, 1, 40] float32, y_pool int64, x_test, y_test).

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
        with _fast_mnist1d_interpolation():
            data = make_dataset(args)
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    x, x_test = (np.asarray(a, dtype=np.float32)[:, None, :] for a in (data["x"], data["x_test"]))
    return x, np.asarray(data["y"], np.int64), x_test, np.asarray(data["y_test"], np.int64)


def prepare(name: str, params: Mapping[str, Any], opts: Mapping[str, Any],
            out_dir: str | Path) -> dict[str, Any]:
    """Generate MNIST-1D, hold out the methods §2 seeded validation split, write files + manifest."""
    x_pool, y_pool, x_test, y_test = _mnist1d_arrays(opts)
    arrays, val_idx = hold_out((x_pool, y_pool), (x_test, y_test), opts)
    return write_embedded(name, params, out_dir, arrays, val_idx)


def _train_size(opts: Mapping[str, Any]) -> int:
    """Training examples the generator gives: whole templates, then ``int(n * fraction)``."""
    n = opts["num_samples"] // NUM_TEMPLATES * NUM_TEMPLATES
    return int(n * opts["train_fraction"])


MNIST1D = Source(
    name="mnist1d", prepare=prepare, downloads=False,
    keys={
        "source": source_key("mnist1d"),
        "num_samples": Key("int", "examples generated, split into train and test; methods §5 "
                           "sizing", default=15000, low=100, high=10_000_000),
        "train_fraction": Key("float", "the generator's train/test split", default=0.8,
                              low=0, high=1, open_low=True, open_high=True),
        "generator_seed": Key("int", "the mnist1d generator's seed", default=42, low=0),
        **COMMON,
        "augment": augment_key("shift1d"),
    },
    train_pool=_train_size, pool_keys=("num_samples", "train_fraction"), spatial_dims=1)

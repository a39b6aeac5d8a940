"""Unit-test fixtures shared by several modules."""

from pathlib import Path

import pytest

from selfdistill.data import prepare_dataset

# A tiny MNIST-1D (480 train+val / 120 test) for training-path tests.
MNIST1D = {"source": "mnist1d", "num_samples": 600, "train_fraction": 0.8,
           "generator_seed": 42, "val_size": 80, "split_seed": 0}


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """The tiny MNIST-1D above, prepared once per test session."""
    out = tmp_path_factory.mktemp("data") / "mnist1d"
    prepare_dataset("mnist1d", MNIST1D, out)
    return out

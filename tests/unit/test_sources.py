"""Dataset-block checks of the source registry (methods §2 hold-out, §5 datasets): every shipped
config passes, every kind of mistake is named with its key and fix, and the training-pool
sizes the checks compute without data equal the sizes the preparers produce."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from selfdistill import download
from selfdistill.data import prepare_dataset
from selfdistill.sources import SOURCES, resolve, validate_dataset

REPO = Path(__file__).resolve().parents[2]
CONFIGS = ["config/config.yaml", "config/paper.yaml", "config/fashion_mnist.yaml",
           "tests/data/tiny.yaml"]
MNIST1D = {"source": "mnist1d", "num_samples": 15000, "train_fraction": 0.8,
           "generator_seed": 42, "val_size": 1000, "split_seed": 0, "augment": "none"}
FASHION_FILES = [a.filename for a in download.SOURCES["fashion_mnist"]]


def _problems(name: str, block: dict) -> str:
    with pytest.raises(ValueError) as err:
        validate_dataset(name, block)
    return str(err.value)


@pytest.mark.parametrize("path", CONFIGS)
def test_every_shipped_dataset_block_passes(path: str) -> None:
    """The blocks of every config validate, and the typed values are the values written."""
    datasets = yaml.safe_load((REPO / path).read_text())["datasets"]
    for name, block in datasets.items():
        values = resolve(name, block)
        assert {k: values[k] for k in block} == block


@pytest.mark.parametrize(("typo", "key"), [("num_sample", "num_samples"),
                                            ("augmnet", "augment"), ("val_sise", "val_size")])
def test_unknown_key_names_the_closest_known_key(typo: str, key: str) -> None:
    block = {**MNIST1D, typo: MNIST1D.get(key, 1)}
    msg = _problems("mnist1d", block)
    assert f"datasets.mnist1d.{typo}: unknown key" in msg
    assert f"did you mean {key}?" in msg


def test_every_problem_is_listed_at_once() -> None:
    block = {k: v for k, v in MNIST1D.items() if k not in ("augment", "val_size")}
    msg = _problems("m", {**block, "augmnet": "none", "val_sise": 10, "train_fraction": 2})
    for key in ("augmnet", "val_sise", "train_fraction", "val_size"):
        assert f"datasets.m.{key}:" in msg
    assert "datasets.m.val_size: missing; add val_size:" in msg


@pytest.mark.parametrize(("key", "value"), [
    ("num_samples", "abc"), ("num_samples", 1500.5), ("num_samples", "1.5e0"),
    ("split_seed", True), ("train_fraction", "high"), ("augment", 3), ("augment", "crop_flip"),
])
def test_wrong_type_or_choice_is_named(key: str, value: object) -> None:
    msg = _problems("mnist1d", {**MNIST1D, key: value})
    assert f"datasets.mnist1d.{key}: expected " in msg and repr(value) in msg
    assert "write " in msg  # the fix


@pytest.mark.parametrize(("key", "value"), [
    ("train_fraction", 2), ("train_fraction", 0), ("train_fraction", 1.0),
    ("num_samples", 99), ("split_seed", -1), ("val_size", 0), ("augment_padding", -1),
])
def test_out_of_range_is_named_with_the_bounds(key: str, value: object) -> None:
    msg = _problems("mnist1d", {**MNIST1D, key: value})
    assert f"datasets.mnist1d.{key}: {value!r} is out of range: it must be" in msg


def test_wrong_values_of_other_sources() -> None:
    digits = {"source": "sklearn_digits", "val_size": 150, "split_seed": 0}
    assert "datasets.d.standardize: expected true or false" in _problems(
        "d", {**digits, "standardize": "yes"})
    assert "datasets.d.augment: expected one of none, crop_flip" in _problems(
        "d", {**digits, "augment": "shift1d"})
    tiny = {"source": "tiny_imagenet", "val_size": 10000, "split_seed": 0}
    assert "datasets.t.image_size: 4 is out of range" in _problems("t", {**tiny, "image_size": 4})
    assert "datasets.t.sha256: expected a 64-hex-digit digest" in _problems(
        "t", {**tiny, "sha256": "abc"})
    assert "datasets.t.mirror: expected a path or URL string" in _problems(
        "t", {**tiny, "mirror": 5})
    assert "datasets.t.local_dir: unknown key" in _problems("t", {**tiny, "local_dir": "/x"})


@pytest.mark.parametrize(("text", "value"), [("1e6", 1_000_000), ("1.0e6", 1_000_000),
                                             ("1.0e+6", 1_000_000), ("15000", 15000)])
def test_numbers_in_exponent_notation_are_whole_numbers(text: str, value: int) -> None:
    """PyYAML reads ``1e6`` and ``1.0e6`` as strings, ``1.0e+6`` as a float: all three are
    the whole number one million for an int key."""
    loaded = yaml.safe_load(f"num_samples: {text}\ntrain_fraction: 8e-1")
    values = resolve("m", {**MNIST1D, **loaded})
    assert values["num_samples"] == value and isinstance(values["num_samples"], int)
    assert values["train_fraction"] == 0.8


def test_unknown_or_missing_source() -> None:
    msg = _problems("c", {"source": "cifar", "val_size": 10, "split_seed": 0})
    assert "datasets.c.source: unknown source 'cifar' (did you mean cifar10?)" in msg
    assert "mnist1d" in msg  # the known sources
    assert "datasets.c.source: missing" in _problems("c", {"val_size": 10})
    assert "datasets.c: expected a mapping" in _problems("c", ["mnist1d"])


def test_val_size_must_fit_the_training_pool() -> None:
    msg = _problems("mnist1d", {**MNIST1D, "val_size": 100000})
    assert "datasets.mnist1d.val_size: 100000 is not smaller than the" in msg
    assert "num_samples=15000" in msg and "choose val_size between 1 and" in msg
    fm = {"source": "fashion_mnist", "val_size": 1000, "split_seed": 0, "train_subset": 500}
    assert "datasets.fm.val_size: 1000 is not smaller than the 500" in _problems("fm", fm)


@pytest.mark.parametrize(("num_samples", "fraction"), [(1234, 0.7), (1000, 0.8), (505, 0.33)])
def test_mnist1d_pool_equals_the_generated_training_set(num_samples: int,
                                                        fraction: float) -> None:
    """The pool computed from the block is the size the generator really gives: the
    largest val_size it accepts leaves exactly one generated training example."""
    from selfdistill.sources.mnist1d import _mnist1d_arrays

    block = {**MNIST1D, "num_samples": num_samples, "train_fraction": fraction}
    x_pool, _, x_test, _ = _mnist1d_arrays(block)
    validate_dataset("m", {**block, "val_size": len(x_pool) - 1})
    assert "is not smaller than" in _problems("m", {**block, "val_size": len(x_pool)})
    assert len(x_test) > 0


@pytest.mark.parametrize("fraction", [0.25, 0.1, 0.333])
def test_digits_pool_equals_the_split_training_set(fraction: float) -> None:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    y = load_digits().target
    n_train = len(train_test_split(y, test_size=fraction, random_state=0, stratify=y)[0])
    block = {"source": "sklearn_digits", "test_fraction": fraction, "split_seed": 0}
    validate_dataset("d", {**block, "val_size": n_train - 1})
    assert "is not smaller than" in _problems("d", {**block, "val_size": n_train})


def test_cross_key_checks_of_single_sources() -> None:
    digits = {"source": "sklearn_digits", "val_size": 10, "split_seed": 0}
    assert "datasets.d.test_fraction: 0.001 leaves fewer than 10" in _problems(
        "d", {**digits, "test_fraction": 0.001})
    tiny = {"source": "tiny_imagenet", "val_size": 10000, "split_seed": 0, "input_size": 32}
    assert "datasets.t.input_size: 32 differs from the stored size 64" in _problems(
        "t", {**tiny, "augment": "crop_flip"})
    validate_dataset("t", {**tiny, "augment": "resized_crop_flip"})


def test_checksums_of_multi_file_sources_are_per_file() -> None:
    fm = {"source": "fashion_mnist", "val_size": 1000, "split_seed": 0}
    assert "datasets.fm.md5: one digest cannot check the 4 archives" in _problems(
        "fm", {**fm, "md5": "0" * 32})
    assert "datasets.fm.sha256: names ['other.gz']" in _problems(
        "fm", {**fm, "sha256": {"other.gz": "0" * 64}})
    assert "datasets.fm.sha256: expected" in _problems(
        "fm", {**fm, "sha256": {FASHION_FILES[0]: "0" * 63}})
    validate_dataset("fm", {**fm, "sha256": dict.fromkeys(FASHION_FILES, "a" * 64)})


def test_registry_flags_and_defaults_are_consistent() -> None:
    """Downloaded sources are exactly those with archives; every default passes its key's
    own check; every source takes the methods §2 hold-out keys."""
    assert {n for n, s in SOURCES.items() if s.downloads} == set(download.SOURCES)
    for name, source in SOURCES.items():
        assert source.name == name
        assert {"source", "val_size", "split_seed", "augment", "augment_padding"} <= set(
            source.keys)
        for key, spec in source.keys.items():
            if key not in ("source", "val_size", "split_seed"):
                assert spec.check(spec.default, source.files) == spec.default, (name, key)


def test_prepare_refuses_a_bad_block_before_writing(tmp_path: Path) -> None:
    out = tmp_path / "d"
    with pytest.raises(ValueError, match="datasets.d.standardise: unknown key"):
        prepare_dataset("d", {"source": "sklearn_digits", "val_size": 150, "split_seed": 0,
                              "standardise": True}, out)
    assert not out.exists()


def test_omitted_keys_take_the_declared_defaults(tmp_path: Path) -> None:
    """A block without the optional keys prepares the same bytes as one that spells out the
    declared defaults."""
    short = {"source": "sklearn_digits", "val_size": 150, "split_seed": 0}
    spelled = {**short, **{k: s.default for k, s in SOURCES["sklearn_digits"].keys.items()
                           if k not in short}}
    a = prepare_dataset("d", short, tmp_path / "a")
    b = prepare_dataset("d", spelled, tmp_path / "b")
    assert a["sha256"] == b["sha256"] and a["params"] == short
    assert np.array_equal(np.load(tmp_path / "a" / "test.npz")["y"],
                          np.load(tmp_path / "b" / "test.npz")["y"])


def test_import_stays_light() -> None:
    """The workflow checks the config at parse time: no torch, PIL, sklearn or mnist1d."""
    code = ("import sys, selfdistill.sources; print(sorted(m for m in ('torch', 'torchvision', "
            "'PIL', 'pandas', 'sklearn', 'mnist1d') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"

"""The prepared-data format (methods §2 validation hold-out, §5 datasets).

A prepared dataset is a directory with ``train.npz``, ``val.npz``, ``test.npz`` (arrays
``x`` and ``y``) and ``manifest.json`` (sizes, class counts, seeds, shapes, normalisation,
sha256 of each file, the dataset block as given). Loading verifies every file against
the manifest.

Image datasets are stored as uint8 [n, C, H, W]; ``manifest["normalize"]`` holds the
per-channel mean/std that :class:`selfdistill.augment.InputPipeline` applies after
scaling to [0, 1] and augmenting, and ``manifest["input_size"]`` the spatial size the
network sees (smaller than the stored size only for ``resized_crop_flip``).

This module is the bottom of the data layer: the sources (:mod:`selfdistill.sources`)
write this format and training reads it; it imports neither of them.
:mod:`selfdistill.data` is the dispatcher above the sources and re-exports these names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .io import read_json, sha256_file, write_json, write_npz

__all__ = [
    "MANIFEST_KEYS",
    "SPLITS",
    "DataError",
    "Split",
    "load_manifest",
    "load_split",
    "split_holdout",
    "write_prepared",
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


MANIFEST_KEYS = ("num_classes", "input_shape", "sha256")  # what training reads


def load_manifest(data_dir: str | Path) -> dict[str, Any]:
    """The manifest of a prepared dataset; a DataError naming the file and how to rebuild
    it when it is missing, unreadable (truncated, not JSON) or lacks :data:`MANIFEST_KEYS`."""
    path = Path(data_dir) / "manifest.json"
    if not path.exists():
        raise DataError(f"dataset manifest {path} is missing: no dataset was prepared in "
                        f"{Path(data_dir)}. From the command line, prepare it first "
                        f"(`python -m selfdistill prepare --help`) or give --data the directory "
                        f"of a prepared dataset (it holds manifest.json); in the workflow, "
                        f"`snakemake {path}` prepares it.")
    rebuild = (f"Delete the dataset directory {Path(data_dir)} and prepare it again: `snakemake "
               f"data` (or `snakemake {path}`), or `python -m selfdistill prepare --out "
               f"{Path(data_dir)}` outside the workflow.")
    try:
        manifest = read_json(path)
    except (OSError, ValueError) as err:  # ValueError: JSONDecodeError, UnicodeDecodeError
        raise DataError(f"dataset manifest {path} is unreadable ({err}): it was cut short or "
                        f"altered. {rebuild}") from err
    missing = ([k for k in MANIFEST_KEYS if k not in manifest] if isinstance(manifest, dict)
               else list(MANIFEST_KEYS))
    if missing:
        raise DataError(f"dataset manifest {path} lacks {missing}: it was not written by "
                        f"`selfdistill prepare` or is damaged. {rebuild}")
    return manifest


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

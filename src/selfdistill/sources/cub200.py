"""CUB-200-2011 (methods §5 names it; its set-up is unknown, so ours), decoded in one
streaming pass over the official tgz, stored as uint8 [n, 3, image_size, image_size].

Nothing is extracted: only regular members are read (links, devices and the like are
skipped, so they cannot point anywhere), each with a size bound (:func:`.shared.tar_bytes`),
and each image is decoded with a pixel bound (:func:`.shared.image_array`)."""

from __future__ import annotations

import tarfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .. import download
from .keys import resized_image_source
from .shared import (
    IMAGENET_NORMALIZE,
    archives,
    image_array,
    member,
    reading,
    tar_bytes,
    write_images,
)

__all__ = ["CUB200", "prepare"]

CUB_TEXTS = ("images.txt", "image_class_labels.txt", "train_test_split.txt", "classes.txt")
TRAIN_IMAGES, DEFAULT_SIZE = 5994, 32  # official train_test_split.txt; the CIFAR-scale recipe


def _cub_members(path: Path, size: int,
                 record: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """One streaming pass over the tgz: every image decoded + resized, and the index files."""
    images: dict[str, np.ndarray] = {}
    texts: dict[str, str] = {}
    with reading(path, record), tarfile.open(path, "r|gz") as tar:
        for m in tar:
            rel = m.name.removeprefix("./")
            if not m.isfile() or not rel.startswith("CUB_200_2011/"):
                continue
            rel = rel.removeprefix("CUB_200_2011/")
            if (rel.startswith("images/") and rel.lower().endswith(".jpg")
                    and not Path(rel).name.startswith("._")):  # no macOS resource forks
                images[rel.removeprefix("images/")] = image_array(
                    tar_bytes(tar, m, path), size, f"{m.name} in {path.name}")
            elif rel in CUB_TEXTS:
                texts[rel] = tar_bytes(tar, m, path).decode()
    for t in CUB_TEXTS:
        member(texts, t, path)
    return images, texts


def _table(text: str) -> dict[int, str]:
    return {int(k): v for k, v in (line.split(" ", 1) for line in text.splitlines() if line)}


def prepare(name: str, params: Mapping[str, Any], opts: Mapping[str, Any],
            out_dir: str | Path, download_dir: str | Path | None = None) -> dict[str, Any]:
    """CUB-200-2011: the official ``train_test_split.txt`` (5,994 train / 5,794 test), a
    seeded validation hold-out from train (methods §2), images resized (shorter side) and
    centre-cropped to ``image_size`` (default 32, the CIFAR-scale recipe), ImageNet
    mean/std; labels from ``image_class_labels.txt``."""
    ddir, records = archives("cub200", opts, download_dir)
    path = ddir / download.SOURCES["cub200"][0].filename
    images, texts = _cub_members(path, int(opts["image_size"]), records[0])
    paths, labels = _table(texts["images.txt"]), _table(texts["image_class_labels.txt"])
    is_train, classes = _table(texts["train_test_split.txt"]), _table(texts["classes.txt"])
    ids = sorted(paths)
    missing = [paths[i] for i in ids if paths[i] not in images]
    if missing:
        raise download.ArchiveError(f"{path.name} lacks {len(missing)} images listed in "
                                    f"images.txt (e.g. images/{missing[0]}).")
    x = np.stack([images[paths[i]] for i in ids])
    y = np.array([int(labels[i]) - 1 for i in ids], np.int64)
    train = np.array([is_train[i].strip() == "1" for i in ids])
    names = [classes[k] for k in sorted(classes)]
    return write_images(name, params, opts, out_dir, (x[train], y[train]),
                        (x[~train], y[~train]), names, IMAGENET_NORMALIZE, records)


CUB200 = resized_image_source("cub200", prepare, DEFAULT_SIZE, TRAIN_IMAGES)

"""Fashion-MNIST (ours: the CPU-scale real-image set), from Debian's
``dataset-fashion-mnist`` idx files or torchvision's download, stored as uint8
[n, 1, image_size, image_size]."""

from __future__ import annotations

import gzip
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .. import download
from ..prepared import split_holdout
from .keys import COMMON, DOWNLOADED, IMAGES, Key, Source, augment_key, resize_check, source_key
from .shared import archives, reading, write_images

__all__ = ["FASHION_MNIST", "prepare"]

FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                         "Shirt", "Sneaker", "Bag", "Ankle boot"]
TRAIN_IMAGES, NATIVE = 60000, 28


MAX_IDX_BYTES = 64 << 20  # decompressed; the largest file, train-images, is 47 MB


def _read_idx(path: Path, record: Mapping[str, Any]) -> np.ndarray:
    """An idx file (gzip): big-endian magic (0, 0, 0x08 = uint8, ndim), dims, data; at most
    :data:`MAX_IDX_BYTES` decompressed (a named error beyond, before reading more)."""
    with reading(path, record), gzip.open(path, "rb") as fh:
        data = fh.read(MAX_IDX_BYTES + 1)
    if len(data) > MAX_IDX_BYTES:
        raise download.ArchiveError(f"{path.name} decompresses to more than "
                                    f"{MAX_IDX_BYTES >> 20} MiB: not a Fashion-MNIST idx file "
                                    f"(check datasets.<name>.local_dir/mirror/sha256).")
    if data[:3] != b"\x00\x00\x08":
        raise download.ArchiveError(f"{path.name} is not a uint8 idx file")
    ndim = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _resize_uint8(x: np.ndarray, size: int) -> np.ndarray:
    """uint8 [n, C, H, W] → [n, C, size, size], antialiased bilinear (as torchvision's
    ``Resize`` on tensors), rounded back to uint8."""
    import torch
    import torch.nn.functional as F

    out = [F.interpolate(torch.tensor(x[i:i + 8192]).float(), size=(size, size),
                         mode="bilinear", align_corners=False, antialias=True)
           for i in range(0, len(x), 8192)]
    return torch.cat(out).round_().clamp_(0, 255).to(torch.uint8).numpy()


def prepare(name: str, params: Mapping[str, Any], opts: Mapping[str, Any],
            out_dir: str | Path, download_dir: str | Path | None = None) -> dict[str, Any]:
    """Fashion-MNIST as [n, 1, 28, 28] uint8. Options (CPU sizing): ``image_size`` resamples
    (antialiased bilinear) to a smaller square size; ``train_subset`` keeps a seeded subset
    of the 60,000 training images (before the methods §2 hold-out). The normalisation mean/std
    are those of the final training split."""
    ddir, records = archives("fashion_mnist", opts, download_dir)
    by_file = {r["file"]: r for r in records}
    x_pool, y_pool, x_test, y_test = (
        _read_idx(ddir / f"{stem}-ubyte.gz", by_file[f"{stem}-ubyte.gz"]) for stem in (
            "train-images-idx3", "train-labels-idx1", "t10k-images-idx3", "t10k-labels-idx1"))
    x_pool, y_pool, x_test = x_pool[:, None], y_pool.astype(np.int64), x_test[:, None]
    if opts["image_size"] != x_pool.shape[-1]:
        x_pool, x_test = (_resize_uint8(a, opts["image_size"]) for a in (x_pool, x_test))
    if opts["train_subset"] and opts["train_subset"] < len(y_pool):
        keep, _ = split_holdout(len(y_pool), len(y_pool) - opts["train_subset"],
                                opts["split_seed"] + 1)
        x_pool, y_pool = x_pool[keep], y_pool[keep]
    tr, _ = split_holdout(len(y_pool), opts["val_size"], opts["split_seed"])
    pixels = x_pool[tr].astype(np.float64) / 255.0
    norm = {"mean": [float(pixels.mean())], "std": [float(pixels.std())]}
    return write_images(name, params, opts, out_dir, (x_pool, y_pool),
                        (x_test, y_test.astype(np.int64)), FASHION_MNIST_CLASSES, norm, records)


FASHION_MNIST = Source(
    name="fashion_mnist", prepare=prepare, downloads=True,
    keys={"source": source_key("fashion_mnist"), **COMMON, **DOWNLOADED, **IMAGES,
          "local_dir": Key("text", "directory holding the four idx .gz files, tried before "
                           f"any download; default {download.FASHION_MNIST_DIR}",
                           default=None, nullable=True),
          "image_size": Key("int", "stored size, resampled with antialiased bilinear from 28 px",
                            default=NATIVE, low=8, high=256),
          "train_subset": Key("int", "seeded subset of the 60,000 training images kept "
                              "before the hold-out; null keeps all", default=None, low=2,
                              nullable=True, example=10000),
          "augment": augment_key("crop_flip", "resized_crop_flip")},
    train_pool=lambda opts: min(opts["train_subset"] or TRAIN_IMAGES, TRAIN_IMAGES),
    pool_keys=("train_subset",), checks=(resize_check(NATIVE),),
    files=tuple(a.filename for a in download.SOURCES["fashion_mnist"]))

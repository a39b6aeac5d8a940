"""Tiny ImageNet (methods §2, §5 paper-scale grid), decoded straight from the official zip and
stored as uint8 [n, 3, image_size, image_size].

Nothing is extracted: each member is streamed out of the zip with a size bound
(:func:`.shared.zip_bytes`) and each image decoded with a pixel bound
(:func:`.shared.image_array`), so a member that expands to gigabytes or an image header
declaring a huge size is a named error citing the archive and the member."""

from __future__ import annotations

import logging
import zipfile
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
    write_images,
    zip_bytes,
)

__all__ = ["TINY_IMAGENET", "prepare"]

log = logging.getLogger(__name__)
TRAIN_IMAGES, NATIVE = 100000, 64  # 500 per class x 200 classes, at 64 px


def _tiny_imagenet_arrays(path: Path, size: int, record: Mapping[str, Any]) -> tuple[Any, ...]:
    """Train images (by ``train/<wnid>/images``) and the official val images labelled by
    ``val/val_annotations.txt`` (the authors' re-sorting into class folders), decoded
    straight from the zip; classes in sorted wnid order (ImageFolder's order)."""
    root = "tiny-imagenet-200/"
    with reading(path, record), zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())

        def text(name: str) -> str:
            return zip_bytes(zf, member(names, root + name, path), path).decode()

        wnids = sorted(text("wnids.txt").split())
        index = {w: i for i, w in enumerate(wnids)}
        train = sorted(n for n in names if n.startswith(root + "train/")
                       and n.lower().endswith(".jpeg"))
        ann = text("val/val_annotations.txt")
        val = sorted((root + "val/images/" + f, index[w]) for f, w, *_ in
                     (line.split("\t") for line in ann.splitlines() if line.strip()))
        x_pool = _decode_members(zf, train, size, path)
        x_test = _decode_members(zf, [member(names, n, path) for n, _ in val], size, path)
    y_pool = np.array([index[n.split("/")[2]] for n in train], np.int64)
    return x_pool, y_pool, x_test, np.array([c for _, c in val], np.int64), wnids


def _decode_members(zf: zipfile.ZipFile, members: list[str], size: int,
                    path: Path) -> np.ndarray:
    out = np.empty((len(members), 3, size, size), np.uint8)
    for i, name in enumerate(members):
        out[i] = image_array(zip_bytes(zf, name, path), size, f"{name} in {path.name}")
        if (i + 1) % 20000 == 0:
            log.info("%s: decoded %d/%d images", path.name, i + 1, len(members))
    return out


def prepare(name: str, params: Mapping[str, Any], opts: Mapping[str, Any],
            out_dir: str | Path, download_dir: str | Path | None = None) -> dict[str, Any]:
    """Tiny ImageNet (methods §2): the 10,000 official val images are the TEST set, a seeded
    10,000 hold-out of the 100,000 training images the validation set; stored at 64 px
    (``image_size``), trained at ``input_size`` 32 (RandomResizedCrop + flip, Resize for
    evaluation), ImageNet mean/std."""
    ddir, records = archives("tiny_imagenet", opts, download_dir)
    path = ddir / download.SOURCES["tiny_imagenet"][0].filename
    x_pool, y_pool, x_test, y_test, wnids = _tiny_imagenet_arrays(path, int(opts["image_size"]),
                                                                   records[0])
    return write_images(name, params, opts, out_dir, (x_pool, y_pool), (x_test, y_test), wnids,
                        IMAGENET_NORMALIZE, records)


TINY_IMAGENET = resized_image_source("tiny_imagenet", prepare, NATIVE, TRAIN_IMAGES)

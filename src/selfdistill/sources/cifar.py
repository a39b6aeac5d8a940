"""CIFAR-10 and CIFAR-100 (methods §5 paper-scale grid) through torchvision's dataset classes,
stored as uint8 [n, 3, 32, 32] with the methods §2 normalisation constants."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .. import download
from .keys import COMMON, DOWNLOADED, IMAGES, Source, augment_key, resize_check, source_key
from .shared import archives, reading, write_images

__all__ = ["CIFAR10", "CIFAR100", "CIFAR_NORMALIZE", "prepare"]

# methods §2 normalisation constants (the authors' code).
CIFAR_NORMALIZE = {
    "cifar10": {"mean": [0.4914, 0.4822, 0.4465], "std": [0.2023, 0.1994, 0.2010]},
    "cifar100": {"mean": [0.5071, 0.4867, 0.4408], "std": [0.2675, 0.2565, 0.2761]},
}
TRAIN_IMAGES, SIZE = 50000, 32  # both releases


def prepare(name: str, params: Mapping[str, Any], opts: Mapping[str, Any],
            out_dir: str | Path, download_dir: str | Path | None = None) -> dict[str, Any]:
    """CIFAR-10/100 through torchvision's dataset classes (``download=True``: its md5 checks
    of the archive and of every extracted file), uint8 NCHW, seeded 5,000 hold-out and the
    methods §2 normalisation constants."""
    source = opts["source"]
    ddir, records = archives(source, opts, download_dir)
    cls = download.torchvision_class(source, opts)
    shutil.rmtree(ddir / cls.base_folder, ignore_errors=True)  # extract from the verified file
    archive = ddir / cls.filename
    try:
        with reading(archive):
            train = cls(root=str(ddir), train=True, download=True)
            test = cls(root=str(ddir), train=False, download=False)
    except download.DownloadError:
        raise
    except RuntimeError as err:  # torchvision: "Dataset not found or corrupted"
        if archive.exists():
            download.move_aside(archive)
        raise download.ArchiveError(f"torchvision rejected {archive.name} in {ddir} ({err}); "
                                    f"it was moved aside; re-run to download it again.") from err
    finally:
        shutil.rmtree(ddir / cls.base_folder, ignore_errors=True)
    pool = (np.ascontiguousarray(train.data.transpose(0, 3, 1, 2)), np.asarray(train.targets))
    test_xy = (np.ascontiguousarray(test.data.transpose(0, 3, 1, 2)), np.asarray(test.targets))
    return write_images(name, params, opts, out_dir, (pool[0], pool[1].astype(np.int64)),
                        (test_xy[0], test_xy[1].astype(np.int64)), list(train.classes),
                        CIFAR_NORMALIZE[source], records)


def _cifar(source: str) -> Source:
    return Source(
        name=source, prepare=prepare, downloads=True,
        keys={"source": source_key(source), **COMMON, **DOWNLOADED, **IMAGES,
              "augment": augment_key("crop_flip", "resized_crop_flip")},
        train_pool=lambda opts: TRAIN_IMAGES, checks=(resize_check(SIZE),),
        files=tuple(a.filename for a in download.SOURCES[source]))


CIFAR10, CIFAR100 = _cifar("cifar10"), _cifar("cifar100")

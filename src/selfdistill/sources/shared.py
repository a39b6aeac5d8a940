"""Helpers several sources share: the hold-out and writing of prepared splits (methods §2),
verified archives and reading them, image decoding, the ImageNet normalisation constants.

Archives are fetched and verified by :mod:`selfdistill.download` into ``download_dir``
(default ``resources/downloads/<source>`` under the working directory, the workflow's
root: :func:`selfdistill.download.download_dir`), and the manifest records each
archive's url and sha256.
"""

from __future__ import annotations

import io
import tarfile
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from .. import download
from ..data import split_holdout, write_prepared

__all__ = ["IMAGENET_NORMALIZE", "archives", "image_array", "member", "reading",
           "write_embedded", "write_images"]

# methods §2 normalisation constants (the authors' code) of ImageNet-style images.
IMAGENET_NORMALIZE = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
READ_ERRORS = (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, OSError)


def write_embedded(name: str, params: Mapping[str, Any], out_dir: str | Path,
                   arrays: Mapping[str, tuple[np.ndarray, np.ndarray]],
                   val_idx: np.ndarray) -> dict[str, Any]:
    """Write an embedded dataset's splits; ``params`` (the block as given) goes to the manifest."""
    num_classes = int(max(y.max() for _, y in arrays.values()) + 1)
    extra = {"val_indices_in_train_pool": val_idx.tolist()}
    return write_prepared(out_dir, name, arrays, num_classes, dict(params), extra)


def hold_out(pool: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray],
             opts: Mapping[str, Any]) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]],
                                               np.ndarray]:
    """methods §2 seeded validation hold-out from the training pool: (splits, hold-out indices)."""
    x_pool, y_pool = pool
    tr, va = split_holdout(len(y_pool), int(opts["val_size"]), int(opts["split_seed"]))
    return {"train": (x_pool[tr], y_pool[tr]), "val": (x_pool[va], y_pool[va]), "test": test}, va


def write_images(name: str, params: Mapping[str, Any], opts: Mapping[str, Any],
                 out_dir: str | Path, pool: tuple[np.ndarray, np.ndarray],
                 test: tuple[np.ndarray, np.ndarray], classes: list[str],
                 normalize: Mapping[str, list[float]],
                 records: list[dict[str, Any]]) -> dict[str, Any]:
    """Seeded validation hold-out from the training pool (methods §2), then write everything."""
    arrays, va = hold_out(pool, test, opts)
    extra = {"val_indices_in_train_pool": va.tolist(), "classes": list(classes),
             "input_size": int(opts.get("input_size") or pool[0].shape[-1]),
             "archives": records}
    norm = {k: [float(v) for v in vals] for k, vals in normalize.items()}
    return write_prepared(out_dir, name, arrays, len(classes), dict(params), extra, norm)


def archives(source: str, opts: Mapping[str, Any],
             download_dir: str | Path | None) -> tuple[Path, list[dict[str, Any]]]:
    """The verified archives of ``source`` (fetched now if the download rule has not) and
    their directory (default :func:`selfdistill.download.download_dir`)."""
    ddir = Path(download_dir) if download_dir else download.download_dir(source)
    return ddir, download.ensure_archives(source, opts, ddir)


@contextmanager
def reading(path: Path) -> Iterator[None]:
    """Turn a read failure of a verified archive into a named error; move the file aside."""
    try:
        yield
    except READ_ERRORS as err:
        bad = download.move_aside(path) if path.exists() else path
        raise download.ArchiveError(
            f"{path.name} is truncated or corrupted ({type(err).__name__}: {err}). Moved "
            f"aside to {bad}; re-run to download it again (or check datasets.<name>.mirror)."
        ) from err


def member(names: Mapping[str, Any] | set[str], name: str, archive: Path) -> str:
    """``name`` if the archive has it, else a named error (not the expected release)."""
    if name not in names:
        raise download.ArchiveError(f"{archive.name} has no {name}: it is not the expected "
                                    f"release (check datasets.<name>.mirror/sha256).")
    return name


def image_array(data: bytes, size: int) -> np.ndarray:
    """Decode an image to uint8 [3, size, size]: RGB, shorter side resized to ``size``
    (PIL bilinear, antialiased) and centre-cropped; unchanged if already ``size`` square."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        im = im.convert("RGB")
        w, h = im.size
        if (w, h) != (size, size):
            scale = size / min(w, h)
            nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
            im = im.resize((nw, nh), Image.BILINEAR)
            left, top = (nw - size) // 2, (nh - size) // 2
            im = im.crop((left, top, left + size, top + size))
        return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1)  # [3, size, size]

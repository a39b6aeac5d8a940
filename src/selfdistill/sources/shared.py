"""Helpers several sources share: the hold-out and writing of prepared splits (methods §2),
verified archives and bounded reads of their members, image decoding, the ImageNet
normalisation constants.

Archives are fetched and verified by :mod:`selfdistill.download` into ``download_dir``
(default ``resources/downloads/<source>`` under the working directory, the workflow's
root: :func:`selfdistill.download.download_dir`), and the manifest records each
archive's url and sha256. The preparers read members straight out of an archive into
memory and extract nothing, so nothing is written into the download directory and
parallel prepares of one source share only the read-only archive. Every member read has a
size bound (:data:`MAX_MEMBER_BYTES`, checked against the size the archive declares and
again while streaming) and every image a pixel bound (:data:`MAX_IMAGE_PIXELS`, checked
on the header before decoding): a decompression bomb is a named
:class:`~selfdistill.download.ArchiveError` citing the archive and the member.

A read error of an archive whose hash has just verified (:func:`reading`) leaves the
file in place: its bytes are the ones the hash names, so downloading it again would give
the same bytes; the error says what to check. Only an archive that no hash vouches for is
moved aside to ``.corrupt``.
"""

from __future__ import annotations

import io
import tarfile
import warnings
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from .. import download
from ..prepared import split_holdout, write_prepared

__all__ = ["IMAGENET_NORMALIZE", "MAX_IMAGE_PIXELS", "MAX_MEMBER_BYTES", "archives",
           "image_array", "member", "reading", "tar_bytes", "write_embedded", "write_images",
           "zip_bytes"]

# methods §2 normalisation constants (the authors' code) of ImageNet-style images.
IMAGENET_NORMALIZE = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
READ_ERRORS = (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, OSError)
# Bounds of what one archive member may hold. The releases' largest text member is Tiny
# ImageNet's val_annotations.txt (~0.4 MB) and their largest image a few hundred kB (CUB);
# 64 MiB leaves room for any re-pack while a bomb (a member that expands to GBs) is refused
# before it is read.
MAX_MEMBER_BYTES = 64 << 20
# 8192 x 8192 = 67 M pixels (a 201 MB RGB decode), below PIL's own warning threshold
# (Image.MAX_IMAGE_PIXELS, 89 M) so that ours fires first; dataset images are <= 500 px.
MAX_IMAGE_PIXELS = 8192 * 8192
CHUNK = 1 << 20  # bytes per streamed read of a member


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
def reading(path: Path, record: Mapping[str, Any]) -> Iterator[None]:
    """Turn a read failure of archive ``path`` into a named :class:`ArchiveError`.

    ``record`` is the archive's verification record (:func:`archives`). An archive whose
    hash has just verified (``record["verified_by"]`` not empty) is left in place and the
    error says that it matches its hash and what to check; only an archive that no hash
    vouches for is moved aside to ``.corrupt`` so that a rerun downloads it again.
    """
    try:
        yield
    except READ_ERRORS as err:
        what = f"{type(err).__name__}: {err}"
        if record.get("verified_by"):
            raise download.ArchiveError(_unreadable_but_verified(path, record, what)) from err
        bad = download.move_aside(path) if path.exists() else path
        raise download.ArchiveError(
            f"{path.name} is truncated or corrupted ({what}). No hash vouches for it (none "
            f"pinned or given), so it was moved aside to {bad}; re-run to download it again "
            f"(or check datasets.<name>.mirror)."
        ) from err


def _official(path: Path, record: Mapping[str, Any]) -> bool:
    """Whether ``record`` matches the pinned official hash of an archive named ``path``."""
    return any(a.filename == path.name and ((a.sha256 and a.sha256 == record.get("sha256"))
                                           or (a.md5 and a.md5 == record.get("md5")))
               for archives_ in download.SOURCES.values() for a in archives_)


def _unreadable_but_verified(path: Path, record: Mapping[str, Any], what: str) -> str:
    kinds = "/".join(record["verified_by"])
    if _official(path, record):
        anchor = f"the pinned {kinds} of the official release"
        check = ("the official release reads cleanly, so check this machine: the disk and "
                 "file system (free space, I/O errors in the kernel log), memory, and the "
                 "Python/zlib install")
    else:
        anchor = f"the {kinds} given in datasets.<name>.sha256/md5"
        check = ("check that the hash you gave is that of a complete, readable archive (a "
                 "hash taken of a cut-short or damaged copy verifies that copy); if it is "
                 "not, correct datasets.<name>.sha256/md5 and delete the file so that it is "
                 "downloaded again")
    return (f"{path} cannot be read ({what}), yet it matches {anchor} (sha256 "
            f"{record.get('sha256')}). It is left in place: downloading it again would give "
            f"the same bytes. To fix: {check}.")


def member(names: Mapping[str, Any] | set[str], name: str, archive: Path) -> str:
    """``name`` if the archive has it, else a named error (not the expected release)."""
    if name not in names:
        raise download.ArchiveError(f"{archive.name} has no {name}: it is not the expected "
                                    f"release (check datasets.<name>.mirror/sha256).")
    return name


def _too_big(name: str, archive: Path, what: str, limit: int) -> download.ArchiveError:
    return download.ArchiveError(
        f"{name} in {archive.name} {what}, over the {limit >> 20} MiB bound for one member "
        f"(shared.MAX_MEMBER_BYTES): a decompression bomb or not the expected release. "
        f"Delete {archive} and fetch the official file, or check datasets.<name>.mirror/"
        f"sha256.")


def zip_bytes(zf: zipfile.ZipFile, name: str, archive: Path,
              limit: int = MAX_MEMBER_BYTES) -> bytes:
    """Member ``name`` of zip ``zf`` (the file ``archive``), streamed in chunks: a named
    error before anything is read when its declared uncompressed size exceeds ``limit``,
    and as soon as the bytes read do."""
    info = zf.getinfo(name)
    if info.file_size > limit:
        raise _too_big(name, archive, f"declares {info.file_size / 2**20:.0f} MiB "
                       f"uncompressed", limit)
    chunks, total = [], 0
    with zf.open(info) as fh:
        while chunk := fh.read(CHUNK):
            total += len(chunk)
            if total > limit:
                raise _too_big(name, archive, "expands to more than it declares", limit)
            chunks.append(chunk)
    return b"".join(chunks)


def tar_bytes(tar: tarfile.TarFile, m: tarfile.TarInfo, archive: Path,
              limit: int = MAX_MEMBER_BYTES) -> bytes:
    """Regular member ``m`` of ``tar`` (the file ``archive``); a named error before it is
    read when its size (a tar header gives the exact size) exceeds ``limit``."""
    if m.size > limit:
        raise _too_big(m.name, archive, f"holds {m.size / 2**20:.0f} MiB", limit)
    fh = tar.extractfile(m)
    if fh is None:  # not a regular file
        raise download.ArchiveError(f"{m.name} in {archive.name} is not a regular file")
    return fh.read()


def image_array(data: bytes, size: int, where: str = "an image") -> np.ndarray:
    """Decode an image to uint8 [3, size, size]: RGB, shorter side resized to ``size``
    (PIL bilinear, antialiased) and centre-cropped; unchanged if already ``size`` square.

    ``where`` (``"<member> in <archive>"``) names the image in errors. An image whose
    header declares more than :data:`MAX_IMAGE_PIXELS` pixels (a decompression bomb) is a
    named :class:`ArchiveError`, raised before any pixel is decoded."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
        w, h = im.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise _bomb(where, str(err)) from err
    with im:
        if w * h > MAX_IMAGE_PIXELS:
            raise _bomb(where, f"{w} x {h} = {w * h / 1e6:.0f} M pixels")
        im = im.convert("RGB")
        if (w, h) != (size, size):
            scale = size / min(w, h)
            nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
            im = im.resize((nw, nh), Image.BILINEAR)
            left, top = (nw - size) // 2, (nh - size) // 2
            im = im.crop((left, top, left + size, top + size))
        return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1)  # [3, size, size]


def _bomb(where: str, what: str) -> download.ArchiveError:
    return download.ArchiveError(
        f"{where}: its header declares {what}, over the bound of "
        f"{MAX_IMAGE_PIXELS / 1e6:.0f} M pixels (shared.MAX_IMAGE_PIXELS): a decompression "
        f"bomb or not a dataset image. It was not decoded; the archive is not the expected "
        f"release: fetch the official file, or check datasets.<name>.mirror/sha256.")

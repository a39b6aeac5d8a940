"""CIFAR-10 and CIFAR-100 (methods §5 paper-scale grid), read by the project's own code
straight from the verified python-version ``.tar.gz``, stored as uint8 [n, 3, 32, 32] with
the methods §2 normalisation constants.

The archive is read in one streaming pass and nothing is extracted: no file is written
into the download directory (a user's ``cifar-10-batches-py/`` there is never touched),
and two prepares of one source share only the read-only archive. Every member is checked
first: an absolute name, a ``..`` component, a symbolic or hard link, a device or other
special file, or setuid/setgid bits raise :class:`~selfdistill.download.ArchiveError`
naming the archive and the member (the releases hold one folder of regular files). The
batches are unpickled by :class:`BatchUnpickler`, which admits only the globals that
numpy arrays need; any other global (``os.system``, ...) is refused, by name, before
anything is called. The arrays equal those torchvision's ``CIFAR10``/``CIFAR100`` classes
read (same batch order, labels and class names).
"""

from __future__ import annotations

import codecs
import io
import pickle
import stat
import tarfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from .. import download
from .keys import COMMON, DOWNLOADED, IMAGES, Source, augment_key, resize_check, source_key
from .shared import archives, member, reading, tar_bytes, write_images

__all__ = ["CIFAR10", "CIFAR100", "CIFAR_NORMALIZE", "LAYOUTS", "BatchUnpickler",
           "check_member", "cifar_arrays", "prepare"]

# methods §2 normalisation constants (the authors' code).
CIFAR_NORMALIZE = {
    "cifar10": {"mean": [0.4914, 0.4822, 0.4465], "std": [0.2023, 0.1994, 0.2010]},
    "cifar100": {"mean": [0.5071, 0.4867, 0.4408], "std": [0.2675, 0.2565, 0.2761]},
}
TRAIN_IMAGES, SIZE = 50000, 32  # both releases
# The largest member, CIFAR-100's train (50,000 x 3,072 bytes + labels), is ~155 MB.
MAX_BATCH_BYTES = 256 << 20


@dataclass(frozen=True)
class Layout:
    """Where a release keeps its batches (torchvision's ``base_folder``, ``train_list``,
    ``test_list``, ``meta``) and the keys of labels and class names."""

    folder: str
    train: tuple[str, ...]
    test: tuple[str, ...]
    meta: str
    labels_key: str
    classes_key: str


LAYOUTS = {
    "cifar10": Layout("cifar-10-batches-py", tuple(f"data_batch_{k}" for k in range(1, 6)),
                      ("test_batch",), "batches.meta", "labels", "label_names"),
    "cifar100": Layout("cifar-100-python", ("train",), ("test",), "meta", "fine_labels",
                       "fine_label_names"),
}


# ------------------------------------------------------------------ restricted unpickling


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it for bytes, latin-1 only."""
    if codecs.lookup(encoding).name != "iso8859-1":
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


def _empty_bytes(*args: Any) -> bytes:
    """``bytes()`` as protocol-2 pickles write ``b""``; no argument admitted."""
    if args:
        raise pickle.UnpicklingError("bytes() with arguments")
    return b""


def _numpy_globals() -> dict[str, Callable[..., Any]]:
    """numpy's array and scalar reconstructors, taken from numpy's own reductions (so no
    module is imported by name: numpy 1 calls them numpy.core.*, numpy 2 numpy._core.*)."""
    a = np.zeros(1, np.uint8)
    return {"_reconstruct": a.__reduce__()[0], "scalar": np.uint8(0).__reduce__()[0],
            "_frombuffer": a.__reduce_ex__(5)[0]}


def _allowed_globals() -> dict[tuple[str, str], Any]:
    fns = _numpy_globals()
    allowed: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray,
                                           ("numpy", "dtype"): np.dtype,
                                           ("_codecs", "encode"): _latin1_encode,
                                           ("__builtin__", "bytes"): _empty_bytes,
                                           ("builtins", "bytes"): _empty_bytes}
    for core in ("numpy.core", "numpy._core"):
        allowed[(f"{core}.multiarray", "_reconstruct")] = fns["_reconstruct"]
        allowed[(f"{core}.multiarray", "scalar")] = fns["scalar"]
        allowed[(f"{core}.numeric", "_frombuffer")] = fns["_frombuffer"]
    return allowed


class BatchUnpickler(pickle.Unpickler):
    """Unpickles a CIFAR batch (dicts, lists, strings, bytes, numbers, numpy arrays) and
    nothing else: ``find_class`` admits only numpy's array/dtype/scalar reconstruction,
    latin-1 ``_codecs.encode`` and argument-less ``bytes()`` (how protocol 2 writes bytes
    and ``b""``); any other global raises :class:`ArchiveError` naming it and
    ``where``. Strings of Python 2 pickles (the releases) decode as latin-1, as torchvision
    reads them."""

    def __init__(self, file: io.BufferedIOBase, where: str) -> None:
        super().__init__(file, encoding="latin1")
        self.where = where
        self.allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self.allowed[(module, name)]
        except KeyError:
            raise download.ArchiveError(
                f"the CIFAR reader refuses global {module}.{name} in {self.where}: a CIFAR "
                f"batch holds only dicts, lists, strings, numbers and numpy arrays. Nothing "
                f"was called; this is not the CIFAR release (a tampered or foreign file): "
                f"delete the archive and fetch the official one, or fix "
                f"datasets.<name>.mirror/sha256."
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent ids are not part of a CIFAR batch")


def _unpickle(data: bytes, where: str) -> Any:
    try:
        return BatchUnpickler(io.BytesIO(data), where).load()
    except (download.ArchiveError, MemoryError):
        raise
    except Exception as err:  # anything a malformed pickle raises
        raise download.ArchiveError(f"{where} is not a readable CIFAR batch "
                                    f"({type(err).__name__}: {err}).") from err


# ------------------------------------------------------------------ reading the archive


def _refusal(m: tarfile.TarInfo) -> str | None:
    """Why member ``m`` has no place in a dataset archive, or None."""
    path = PurePosixPath(m.name)
    if path.is_absolute():
        return "an absolute path"
    if ".." in path.parts:
        return "a path with a '..' component (it points outside the archive's folder)"
    if m.issym():
        return f"a symbolic link (to {m.linkname!r})"
    if m.islnk():
        return f"a hard link (to {m.linkname!r})"
    if m.ischr() or m.isblk():
        return "a device file"
    if not (m.isfile() or m.isdir()):
        return "a special file (FIFO or of unknown type)"
    if m.mode & (stat.S_ISUID | stat.S_ISGID):
        return f"a file with setuid/setgid bits (mode {m.mode:o})"
    return None


def check_member(m: tarfile.TarInfo, archive: Path) -> None:
    """ArchiveError naming ``archive`` and member ``m`` unless it is a plain file or folder
    inside the archive's tree."""
    why = _refusal(m)
    if why is not None:
        raise download.ArchiveError(
            f"{archive.name}: member {m.name!r} is {why}. The CIFAR releases hold one folder "
            f"of regular files; nothing was extracted, but this archive is not the release "
            f"(a re-pack or a tampered copy): delete {archive} and fetch the official file, "
            f"or fix datasets.<name>.mirror/sha256.")


def _read_members(path: Path, layout: Layout) -> dict[str, Any]:
    """One streaming pass over the tar.gz: every member checked, the batches and the meta
    file read into memory and unpickled; ``{file name: unpickled object}``."""
    wanted = {f"{layout.folder}/{f}": f for f in (*layout.train, *layout.test, layout.meta)}
    found: dict[str, Any] = {}
    with tarfile.open(path, "r|gz") as tar:
        for m in tar:
            check_member(m, path)
            name = m.name.removeprefix("./")
            if name not in wanted or not m.isfile():
                continue
            if name in found:
                raise download.ArchiveError(f"{path.name} holds {name} twice: it is not the "
                                            f"release (check datasets.<name>.mirror/sha256).")
            found[name] = _unpickle(tar_bytes(tar, m, path, MAX_BATCH_BYTES),
                                    f"{name} of {path.name}")
    for name in wanted:
        member(found, name, path)
    return {wanted[n]: obj for n, obj in found.items()}


def _batch(entry: Any, key: str, where: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """One batch's images uint8 [n, 3, 32, 32] and int64 labels [n], checked."""
    if not isinstance(entry, dict) or "data" not in entry or key not in entry:
        got = sorted(map(str, entry)) if isinstance(entry, dict) else type(entry).__name__
        raise download.ArchiveError(f"{where}: expected a dict with 'data' and {key!r}, "
                                    f"got {got}: not a CIFAR batch.")
    x, y = entry["data"], np.asarray(entry[key])
    if not (isinstance(x, np.ndarray) and x.dtype == np.uint8 and x.ndim == 2
            and x.shape[1] == 3 * SIZE * SIZE):
        raise download.ArchiveError(f"{where}: 'data' must be a uint8 array [n, 3072], got "
                                    f"{getattr(x, 'dtype', type(x).__name__)} "
                                    f"{getattr(x, 'shape', '')}: not a CIFAR batch.")
    if y.shape != (len(x),) or y.dtype.kind not in "iu" or (
            len(y) and (y.min() < 0 or y.max() >= num_classes)):
        raise download.ArchiveError(f"{where}: {key!r} must hold {len(x)} labels in "
                                    f"[0, {num_classes}); not a CIFAR batch.")
    return x.reshape(-1, 3, SIZE, SIZE), y.astype(np.int64)


def cifar_arrays(path: Path, source: str) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                   np.ndarray, list[str]]:
    """(train images, train labels, test images, test labels, class names) of the CIFAR
    archive ``path``: images uint8 [n, 3, 32, 32] in the release's batch order, labels
    int64 [n]; what torchvision's dataset classes read, without extracting anything."""
    layout = LAYOUTS[source]
    objs = _read_members(path, layout)
    meta = objs[layout.meta]
    classes = meta.get(layout.classes_key) if isinstance(meta, dict) else None
    if not (isinstance(classes, list) and classes and all(isinstance(c, str) for c in classes)):
        raise download.ArchiveError(f"{layout.folder}/{layout.meta} of {path.name}: expected "
                                    f"{layout.classes_key!r}, a list of class names.")

    def stack(files: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        parts = [_batch(objs[f], layout.labels_key, f"{layout.folder}/{f} of {path.name}",
                        len(classes)) for f in files]
        return np.concatenate([x for x, _ in parts]), np.concatenate([y for _, y in parts])

    (x_pool, y_pool), (x_test, y_test) = stack(layout.train), stack(layout.test)
    return x_pool, y_pool, x_test, y_test, list(classes)


def prepare(name: str, params: Mapping[str, Any], opts: Mapping[str, Any],
            out_dir: str | Path, download_dir: str | Path | None = None) -> dict[str, Any]:
    """CIFAR-10/100 from the verified archive (its sha256, and md5 = torchvision's
    ``tgz_md5``, checked by :mod:`selfdistill.download`), read without extracting: uint8
    NCHW, seeded 5,000 hold-out and the methods §2 normalisation constants."""
    source = opts["source"]
    ddir, records = archives(source, opts, download_dir)
    path = ddir / download.SOURCES[source][0].filename
    with reading(path, records[0]):
        x_pool, y_pool, x_test, y_test, classes = cifar_arrays(path, source)
    return write_images(name, params, opts, out_dir, (x_pool, y_pool), (x_test, y_test),
                        classes, CIFAR_NORMALIZE[source], records)


def _cifar(source: str) -> Source:
    return Source(
        name=source, prepare=prepare, downloads=True,
        keys={"source": source_key(source), **COMMON, **DOWNLOADED, **IMAGES,
              "augment": augment_key("crop_flip", "resized_crop_flip")},
        train_pool=lambda opts: TRAIN_IMAGES, checks=(resize_check(SIZE),),
        files=tuple(a.filename for a in download.SOURCES[source]))


CIFAR10, CIFAR100 = _cifar("cifar10"), _cifar("cifar100")

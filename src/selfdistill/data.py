"""Dataset preparation and loading (SPEC §2 validation hold-out, §5 embedded default and
paper-scale grid).

A prepared dataset is a directory with ``train.npz``, ``val.npz``, ``test.npz`` (arrays
``x`` and ``y``) and ``manifest.json`` (sizes, class counts, seeds, shapes, normalisation,
sha256 of each file). Loading verifies every file against the manifest.

Image datasets are stored as uint8 [n, C, H, W]; ``manifest["normalize"]`` holds the
per-channel mean/std that :class:`selfdistill.augment.InputPipeline` applies after
scaling to [0, 1] and augmenting, and ``manifest["input_size"]`` the spatial size the
network sees (smaller than the stored size only for ``resized_crop_flip``). Their
archives are fetched and verified by :mod:`selfdistill.download` into
``download_dir`` (default: ``<out_dir>/../../downloads/<source>``, i.e.
``results/downloads/<source>`` for ``results/data/<name>``), and the manifest records
each archive's url and sha256.
"""

from __future__ import annotations

import gzip
import io
import logging
import random
import shutil
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import download
from .io import read_json, sha256_file, write_json, write_npz

log = logging.getLogger(__name__)

__all__ = [
    "CIFAR_NORMALIZE",
    "IMAGENET_NORMALIZE",
    "PREPARERS",
    "SPLITS",
    "DataError",
    "Split",
    "load_manifest",
    "load_split",
    "prepare_cifar",
    "prepare_cub200",
    "prepare_dataset",
    "prepare_fashion_mnist",
    "prepare_tiny_imagenet",
    "split_holdout",
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


@contextmanager
def _fast_mnist1d_interpolation() -> Iterator[None]:
    """Swap ``mnist1d.transform.interpolate`` for an equal, faster one while generating.

    The generator resamples every example four times through ``scipy.interpolate.interp1d``
    (linear), whose constructor's checks are three quarters of generation time (about 12 s
    for the default 15,000 examples). For 1-D float input, ``interp1d`` evaluates with
    ``np.interp`` on the same ``linspace`` grids, so calling ``np.interp`` directly gives
    the same bits (tests/unit/test_train.py compares whole datasets) and draws nothing from
    the generator's random stream. Any other input goes to the package's own function.
    """
    import importlib

    # the package re-exports a function named ``transform``, so fetch the module itself
    transform = importlib.import_module("mnist1d.transform")
    original = transform.interpolate
    grids: dict[int, np.ndarray] = {}

    def grid(n: int) -> np.ndarray:
        if n not in grids:
            grids[n] = np.linspace(0, 1, n)
            grids[n].setflags(write=False)
        return grids[n]

    def interpolate(x: Any, n: int) -> np.ndarray:
        arr = np.asarray(x)
        if arr.ndim != 1 or arr.dtype not in (np.float64, np.int64) or len(arr) < 2:
            return original(x, n)
        return np.interp(grid(n), grid(len(arr)), arr.astype(np.float64, copy=False))

    transform.interpolate = interpolate
    try:
        yield
    finally:
        transform.interpolate = original


def _mnist1d_arrays(params: Mapping[str, Any]) -> tuple[np.ndarray, ...]:
    """MNIST-1D from the ``mnist1d`` generator, offline and deterministic.

    The generator reseeds numpy's and Python's global generators; their states are saved
    and restored around it so that nothing else is affected.
    """
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = int(params["num_samples"])
    args.train_split = float(params["train_fraction"])
    args.seed = int(params["generator_seed"])
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        with _fast_mnist1d_interpolation():
            data = make_dataset(args)
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    x, x_test = (np.asarray(a, dtype=np.float32)[:, None, :] for a in (data["x"], data["x_test"]))
    return x, np.asarray(data["y"], np.int64), x_test, np.asarray(data["y_test"], np.int64)


def _digits_arrays(params: Mapping[str, Any]) -> tuple[np.ndarray, ...]:
    """scikit-learn's 8×8 digits, scaled to [0, 1], seeded stratified train/test split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = (bunch.images.astype(np.float32) / 16.0)[:, None, :, :]  # [n, 1, 8, 8]
    y = bunch.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=float(params["test_fraction"]), random_state=int(params["generator_seed"]),
        stratify=y)
    return x_tr, y_tr, x_te, y_te


def _standardize(x_train: np.ndarray, *others: np.ndarray) -> tuple[list[np.ndarray], float, float]:
    mean, std = float(x_train.mean()), float(x_train.std())
    return [((a - mean) / std).astype(np.float32) for a in (x_train, *others)], mean, std


def prepare_embedded(name: str, params: Mapping[str, Any], out_dir: str | Path) -> dict[str, Any]:
    """Generate an embedded dataset, hold out a seeded validation split, write files + manifest."""
    source = params["source"]
    if source not in EMBEDDED:
        raise KeyError(f"datasets.{name}.source: unknown source {source!r}; "
                       f"known: {sorted(EMBEDDED)}")
    x_full, y_full, x_test, y_test = EMBEDDED[source](params)
    tr_idx, va_idx = split_holdout(len(y_full), int(params["val_size"]), int(params["split_seed"]))
    arrays = {"train": (x_full[tr_idx], y_full[tr_idx]), "val": (x_full[va_idx], y_full[va_idx]),
              "test": (x_test, y_test)}
    if params.get("standardize", False):
        (xtr, xva, xte), mean, std = _standardize(arrays["train"][0], arrays["val"][0], x_test)
        arrays = {"train": (xtr, arrays["train"][1]), "val": (xva, arrays["val"][1]),
                  "test": (xte, y_test)}
    num_classes = int(max(y.max() for _, y in arrays.values()) + 1)
    extra = {"val_indices_in_train_pool": va_idx.tolist()}
    return write_prepared(out_dir, name, arrays, num_classes, dict(params), extra)


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


def load_manifest(data_dir: str | Path) -> dict[str, Any]:
    path = Path(data_dir) / "manifest.json"
    if not path.exists():
        raise DataError(f"dataset manifest {path} is missing: run the prepare_dataset rule "
                        f"(snakemake {path}) before training.")
    return read_json(path)


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


EMBEDDED: dict[str, Callable[[Mapping[str, Any]], tuple[np.ndarray, ...]]] = {
    "mnist1d": _mnist1d_arrays,
    "sklearn_digits": _digits_arrays,
}

# ------------------------------------------------------------------ image datasets

# SPEC §2 normalisation constants (the authors' code).
CIFAR_NORMALIZE = {
    "cifar10": {"mean": [0.4914, 0.4822, 0.4465], "std": [0.2023, 0.1994, 0.2010]},
    "cifar100": {"mean": [0.5071, 0.4867, 0.4408], "std": [0.2675, 0.2565, 0.2761]},
}
IMAGENET_NORMALIZE = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
READ_ERRORS = (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, OSError)


def _download_dir(source: str, out_dir: str | Path, download_dir: str | Path | None) -> Path:
    """Where the archives of ``source`` live: ``results/downloads/<source>`` by default."""
    return Path(download_dir) if download_dir else Path(out_dir).parent.parent / "downloads" / source


def _archives(source: str, params: Mapping[str, Any], out_dir: str | Path,
              download_dir: str | Path | None) -> tuple[Path, list[dict[str, Any]]]:
    """The verified archives of ``source`` (fetched now if the download rule has not)."""
    ddir = _download_dir(source, out_dir, download_dir)
    return ddir, download.ensure_archives(source, params, ddir)


@contextmanager
def _reading(path: Path) -> Iterator[None]:
    """Turn a read failure of a verified archive into a named error; move the file aside."""
    try:
        yield
    except READ_ERRORS as err:
        bad = download.move_aside(path) if path.exists() else path
        raise download.ArchiveError(
            f"{path.name} is truncated or corrupted ({type(err).__name__}: {err}). Moved "
            f"aside to {bad}; re-run to download it again (or check datasets.<name>.mirror)."
        ) from err


def _member(names: Mapping[str, Any] | set[str], name: str, archive: Path) -> str:
    if name not in names:
        raise download.ArchiveError(f"{archive.name} has no {name}: it is not the expected "
                                    f"release (check datasets.<name>.mirror/sha256).")
    return name


def _image_array(data: bytes, size: int) -> np.ndarray:
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


def _write_images(name: str, params: Mapping[str, Any], out_dir: str | Path,
                  pool: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray],
                  classes: list[str], normalize: Mapping[str, list[float]],
                  records: list[dict[str, Any]]) -> dict[str, Any]:
    """Seeded validation hold-out from the training pool (SPEC §2), then write everything."""
    x_pool, y_pool = pool
    tr, va = split_holdout(len(y_pool), int(params["val_size"]), int(params["split_seed"]))
    arrays = {"train": (x_pool[tr], y_pool[tr]), "val": (x_pool[va], y_pool[va]), "test": test}
    extra = {"val_indices_in_train_pool": va.tolist(), "classes": list(classes),
             "input_size": int(params.get("input_size") or x_pool.shape[-1]),
             "archives": records}
    norm = {k: [float(v) for v in vals] for k, vals in normalize.items()}
    return write_prepared(out_dir, name, arrays, len(classes), dict(params), extra, norm)


def prepare_cifar(name: str, params: Mapping[str, Any], out_dir: str | Path,
                  download_dir: str | Path | None = None) -> dict[str, Any]:
    """CIFAR-10/100 through torchvision's dataset classes (``download=True``: its md5 checks
    of the archive and of every extracted file), uint8 NCHW, seeded 5,000 hold-out and the
    SPEC §2 normalisation constants."""
    source = params["source"]
    ddir, records = _archives(source, params, out_dir, download_dir)
    cls = download.torchvision_class(source, params)
    shutil.rmtree(ddir / cls.base_folder, ignore_errors=True)  # extract from the verified file
    archive = ddir / cls.filename
    try:
        with _reading(archive):
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
    return _write_images(name, params, out_dir, (pool[0], pool[1].astype(np.int64)),
                         (test_xy[0], test_xy[1].astype(np.int64)), list(train.classes),
                         CIFAR_NORMALIZE[source], records)


def _tiny_imagenet_arrays(path: Path, size: int) -> tuple[Any, ...]:
    """Train images (by ``train/<wnid>/images``) and the official val images labelled by
    ``val/val_annotations.txt`` (the authors' re-sorting into class folders), decoded
    straight from the zip; classes in sorted wnid order (ImageFolder's order)."""
    root = "tiny-imagenet-200/"
    with _reading(path), zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
        wnids = sorted(zf.read(_member(names, root + "wnids.txt", path)).decode().split())
        index = {w: i for i, w in enumerate(wnids)}
        train = sorted(n for n in names if n.startswith(root + "train/")
                       and n.lower().endswith(".jpeg"))
        ann = zf.read(_member(names, root + "val/val_annotations.txt", path)).decode()
        val = sorted((root + "val/images/" + f, index[w]) for f, w, *_ in
                     (line.split("\t") for line in ann.splitlines() if line.strip()))
        x_pool = _decode_members(zf.read, train, size, path)
        x_test = _decode_members(zf.read, [_member(names, n, path) for n, _ in val], size, path)
    y_pool = np.array([index[n.split("/")[2]] for n in train], np.int64)
    return x_pool, y_pool, x_test, np.array([c for _, c in val], np.int64), wnids


def _decode_members(read: Callable[[str], bytes], members: list[str], size: int,
                    path: Path) -> np.ndarray:
    out = np.empty((len(members), 3, size, size), np.uint8)
    for i, member in enumerate(members):
        out[i] = _image_array(read(member), size)
        if (i + 1) % 20000 == 0:
            log.info("%s: decoded %d/%d images", path.name, i + 1, len(members))
    return out


def prepare_tiny_imagenet(name: str, params: Mapping[str, Any], out_dir: str | Path,
                          download_dir: str | Path | None = None) -> dict[str, Any]:
    """Tiny ImageNet (SPEC §2): the 10,000 official val images are the TEST set, a seeded
    10,000 hold-out of the 100,000 training images the validation set; stored at 64 px
    (``image_size``), trained at ``input_size`` 32 (RandomResizedCrop + flip, Resize for
    evaluation), ImageNet mean/std."""
    ddir, records = _archives("tiny_imagenet", params, out_dir, download_dir)
    path = ddir / download.SOURCES["tiny_imagenet"][0].filename
    x_pool, y_pool, x_test, y_test, wnids = _tiny_imagenet_arrays(
        path, int(params.get("image_size", 64)))
    return _write_images(name, params, out_dir, (x_pool, y_pool), (x_test, y_test), wnids,
                         IMAGENET_NORMALIZE, records)


CUB_TEXTS = ("images.txt", "image_class_labels.txt", "train_test_split.txt", "classes.txt")


def _cub_members(path: Path, size: int) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """One streaming pass over the tgz: every image decoded + resized, and the index files."""
    images: dict[str, np.ndarray] = {}
    texts: dict[str, str] = {}
    with _reading(path), tarfile.open(path, "r|gz") as tar:
        for m in tar:
            rel = m.name.removeprefix("./")
            if not m.isfile() or not rel.startswith("CUB_200_2011/"):
                continue
            rel = rel.removeprefix("CUB_200_2011/")
            if (rel.startswith("images/") and rel.lower().endswith(".jpg")
                    and not Path(rel).name.startswith("._")):  # no macOS resource forks
                images[rel.removeprefix("images/")] = _image_array(tar.extractfile(m).read(), size)
            elif rel in CUB_TEXTS:
                texts[rel] = tar.extractfile(m).read().decode()
    for t in CUB_TEXTS:
        _member(texts, t, path)
    return images, texts


def _table(text: str) -> dict[int, str]:
    return {int(k): v for k, v in (line.split(" ", 1) for line in text.splitlines() if line)}


def prepare_cub200(name: str, params: Mapping[str, Any], out_dir: str | Path,
                   download_dir: str | Path | None = None) -> dict[str, Any]:
    """CUB-200-2011 (SPEC §5 names it; its set-up is unknown, so ours): the official
    ``train_test_split.txt`` (5,994 train / 5,794 test), a seeded validation hold-out from
    train, images resized (shorter side) and centre-cropped to ``image_size`` (default 32,
    the CIFAR-scale recipe), ImageNet mean/std; labels from ``image_class_labels.txt``."""
    ddir, records = _archives("cub200", params, out_dir, download_dir)
    path = ddir / download.SOURCES["cub200"][0].filename
    images, texts = _cub_members(path, int(params.get("image_size", 32)))
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
    return _write_images(name, params, out_dir, (x[train], y[train]), (x[~train], y[~train]),
                         names, IMAGENET_NORMALIZE, records)


FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                         "Shirt", "Sneaker", "Bag", "Ankle boot"]


def _read_idx(path: Path) -> np.ndarray:
    """An idx file (gzip): big-endian magic (0, 0, 0x08 = uint8, ndim), dims, data."""
    with _reading(path), gzip.open(path, "rb") as fh:
        data = fh.read()
    if data[:3] != b"\x00\x00\x08":
        raise download.ArchiveError(f"{path.name} is not a uint8 idx file")
    ndim = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def prepare_fashion_mnist(name: str, params: Mapping[str, Any], out_dir: str | Path,
                          download_dir: str | Path | None = None) -> dict[str, Any]:
    """Fashion-MNIST as [n, 1, 28, 28] uint8 (ours: the CPU-scale real-image set), from
    Debian's ``dataset-fashion-mnist`` files or torchvision's download. Options (CPU
    sizing): ``image_size`` resamples (antialiased bilinear) to a smaller square size;
    ``train_subset`` keeps a seeded subset of the 60,000 training images (before the
    SPEC §2 hold-out). The normalisation mean/std are those of the final training split."""
    ddir, records = _archives("fashion_mnist", params, out_dir, download_dir)
    x_pool, y_pool, x_test, y_test = (_read_idx(ddir / f"{stem}-ubyte.gz") for stem in (
        "train-images-idx3", "train-labels-idx1", "t10k-images-idx3", "t10k-labels-idx1"))
    x_pool, y_pool, x_test = x_pool[:, None], y_pool.astype(np.int64), x_test[:, None]
    if params.get("image_size") and int(params["image_size"]) != x_pool.shape[-1]:
        x_pool, x_test = (_resize_uint8(a, int(params["image_size"])) for a in (x_pool, x_test))
    if params.get("train_subset") and int(params["train_subset"]) < len(y_pool):
        keep, _ = split_holdout(len(y_pool), len(y_pool) - int(params["train_subset"]),
                                int(params["split_seed"]) + 1)
        x_pool, y_pool = x_pool[keep], y_pool[keep]
    tr, _ = split_holdout(len(y_pool), int(params["val_size"]), int(params["split_seed"]))
    pixels = x_pool[tr].astype(np.float64) / 255.0
    norm = {"mean": [float(pixels.mean())], "std": [float(pixels.std())]}
    return _write_images(name, params, out_dir, (x_pool, y_pool),
                         (x_test, y_test.astype(np.int64)), FASHION_MNIST_CLASSES, norm, records)


def _resize_uint8(x: np.ndarray, size: int) -> np.ndarray:
    """uint8 [n, C, H, W] → [n, C, size, size], antialiased bilinear (as torchvision's
    ``Resize`` on tensors), rounded back to uint8."""
    import torch
    import torch.nn.functional as F

    out = [F.interpolate(torch.tensor(x[i:i + 8192]).float(), size=(size, size),
                         mode="bilinear", align_corners=False, antialias=True)
           for i in range(0, len(x), 8192)]
    return torch.cat(out).round_().clamp_(0, 255).to(torch.uint8).numpy()


PREPARERS: dict[str, Callable[..., dict[str, Any]]] = {
    "mnist1d": prepare_embedded,
    "sklearn_digits": prepare_embedded,
    "cifar10": prepare_cifar,
    "cifar100": prepare_cifar,
    "tiny_imagenet": prepare_tiny_imagenet,
    "cub200": prepare_cub200,
    "fashion_mnist": prepare_fashion_mnist,
}
DOWNLOADED = ("cifar10", "cifar100", "tiny_imagenet", "cub200", "fashion_mnist")


def prepare_dataset(name: str, params: Mapping[str, Any], out_dir: str | Path,
                    download_dir: str | Path | None = None) -> dict[str, Any]:
    """Prepare dataset ``name`` described by config ``params`` (its ``source`` picks the
    preparer); ``download_dir`` holds the source's archives (default: see module doc)."""
    source = params.get("source")
    if source not in PREPARERS:
        raise KeyError(f"datasets.{name}.source: unknown source {source!r}; known: {sorted(PREPARERS)}")
    if source in DOWNLOADED:
        return PREPARERS[source](name, params, out_dir, download_dir=download_dir)
    return PREPARERS[source](name, params, out_dir)

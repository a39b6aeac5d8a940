"""Verified downloads and the paper-scale preparers (methods §2, §5) on fabricated archives.

Small archives in the REAL formats (CIFAR python pickles in tar.gz, the Tiny ImageNet
zip, the CUB-200-2011 tgz, Fashion-MNIST idx.gz) are served by a loopback HTTP server;
the dataset block's ``mirror`` points at it and its ``sha256``/``md5`` pin the fabricated
files (the official values are pinned in ``selfdistill.download.SOURCES``).
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import json
import os
import pickle
import shutil
import subprocess
import sys
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from selfdistill import download as D
from selfdistill import run
from selfdistill.augment import build_input_pipeline
from selfdistill.data import SPLITS, load_split, prepare_dataset
from selfdistill.train import TrainConfig

from ..conftest import copy_workflow

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run in ``tmp_path``: the preparers' default archive directory, resources/downloads,
    is relative to the working directory (the workflow's root)."""
    monkeypatch.chdir(tmp_path)


# ------------------------------------------------------------------ fabricated archives


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)


def make_cifar10(out: Path, per_class: int = 1) -> dict[str, np.ndarray]:
    """cifar-10-batches-py/data_batch_1..5, test_batch, batches.meta (pickled dicts)."""
    arrays = {}
    with tarfile.open(out, "w:gz") as tar:
        for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
            labels = np.repeat(np.arange(10), per_class * (2 if name == "test_batch" else 1))
            x = _images(len(labels), i)
            arrays[name] = x
            entry = {"batch_label": name, "labels": labels.tolist(),
                     "data": x.reshape(len(labels), -1), "filenames": [f"{name}_{j}.png"
                                                                     for j in range(len(labels))]}
            _add(tar, f"cifar-10-batches-py/{name}", pickle.dumps(entry, protocol=2))
        meta = {"label_names": [f"class{k}" for k in range(10)], "num_vis": 3072}
        _add(tar, "cifar-10-batches-py/batches.meta", pickle.dumps(meta, protocol=2))
    return arrays


def make_cifar100(out: Path) -> dict[str, np.ndarray]:
    """cifar-100-python/train, test, meta with fine_labels (2 train, 1 test per class)."""
    arrays = {}
    with tarfile.open(out, "w:gz") as tar:
        for i, (name, per) in enumerate((("train", 2), ("test", 1))):
            fine = np.repeat(np.arange(100), per)
            x = _images(len(fine), 10 + i)
            arrays[name] = x
            entry = {"fine_labels": fine.tolist(), "coarse_labels": (fine // 5).tolist(),
                     "data": x.reshape(len(fine), -1), "filenames": [str(j) for j in fine]}
            _add(tar, f"cifar-100-python/{name}", pickle.dumps(entry, protocol=2))
        meta = {"fine_label_names": [f"f{k}" for k in range(100)],
                "coarse_label_names": [f"c{k}" for k in range(20)]}
        _add(tar, "cifar-100-python/meta", pickle.dumps(meta, protocol=2))
    return arrays


COLORS = [(230, 20, 20), (20, 230, 20), (20, 20, 230)]  # one solid colour per class


def _jpeg(color: tuple[int, int, int], size: tuple[int, int], mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    im = Image.new("RGB", size, color)
    (im.convert(mode) if mode != "RGB" else im).save(buf, "JPEG", quality=95)
    return buf.getvalue()


TINY_WNIDS = ["n02", "n01", "n03"]  # unsorted on purpose: classes are in sorted wnid order


def make_tiny_imagenet(out: Path, train_per_class: int = 4, val_per_class: int = 2,
                       skip: str = "") -> None:
    """tiny-imagenet-200/{wnids.txt, words.txt, train/<wnid>/images, boxes, val/...}."""
    root = "tiny-imagenet-200/"
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr(root + "wnids.txt", "\n".join(TINY_WNIDS) + "\n")
        zf.writestr(root + "words.txt", "".join(f"{w}\tthing {w}\n" for w in TINY_WNIDS))
        for w in TINY_WNIDS:
            color = COLORS[sorted(TINY_WNIDS).index(w)]
            boxes = []
            for k in range(train_per_class):
                mode = "L" if k == 0 else "RGB"  # Tiny ImageNet has some greyscale JPEGs
                zf.writestr(f"{root}train/{w}/images/{w}_{k}.JPEG", _jpeg(color, (64, 64), mode))
                boxes.append(f"{w}_{k}.JPEG\t0\t0\t63\t63\n")
            zf.writestr(f"{root}train/{w}/{w}_boxes.txt", "".join(boxes))
        ann = []
        for k in range(val_per_class * len(TINY_WNIDS)):
            w = TINY_WNIDS[k % len(TINY_WNIDS)]
            zf.writestr(f"{root}val/images/val_{k}.JPEG",
                        _jpeg(COLORS[sorted(TINY_WNIDS).index(w)], (64, 64)))
            ann.append(f"val_{k}.JPEG\t{w}\t0\t0\t63\t63\n")
        if skip != "val/val_annotations.txt":
            zf.writestr(root + "val/val_annotations.txt", "".join(ann))
        zf.writestr(root + "test/images/test_0.JPEG", _jpeg((0, 0, 0), (64, 64)))


def make_cub(out: Path, per_class: int = 4) -> dict[str, list[int]]:
    """CUB_200_2011/{images/<class>/*.jpg, images.txt, image_class_labels.txt,
    train_test_split.txt, classes.txt} with 3 classes; alternate images are train."""
    classes = ["001.Red_bird", "002.Green_bird", "003.Blue_bird"]
    lines: dict[str, list[str]] = {"images": [], "labels": [], "split": []}
    split: dict[str, list[int]] = {"train": [], "test": []}
    with tarfile.open(out, "w:gz") as tar:
        _add(tar, "attributes.txt", b"1 has_bill_shape::dagger\n")
        image_id = 0
        for c, cls in enumerate(classes):
            for k in range(per_class):
                image_id += 1
                rel = f"{cls}/{cls[4:]}_{k}.jpg"
                _add(tar, f"CUB_200_2011/images/{rel}", _jpeg(COLORS[c], (50 + 10 * k, 40)))
                is_train = k % 2
                lines["images"].append(f"{image_id} {rel}")
                lines["labels"].append(f"{image_id} {c + 1}")
                lines["split"].append(f"{image_id} {is_train}")
                split["train" if is_train else "test"].append(c)
        for name, key in (("images.txt", "images"), ("image_class_labels.txt", "labels"),
                          ("train_test_split.txt", "split")):
            _add(tar, f"CUB_200_2011/{name}", ("\n".join(lines[key]) + "\n").encode())
        _add(tar, "CUB_200_2011/classes.txt",
             "".join(f"{i + 1} {c}\n" for i, c in enumerate(classes)).encode())
    return split


def _idx(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return gzip.compress(header + array.astype(np.uint8).tobytes(), mtime=0)


def make_fashion_mnist(directory: Path) -> dict[str, str]:
    """The four idx .gz files (60 train, 20 test); returns the decompressed sha256s."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    data = {"train-images-idx3-ubyte.gz": rng.integers(0, 256, (60, 28, 28)),
            "train-labels-idx1-ubyte.gz": np.arange(60) % 10,
            "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (20, 28, 28)),
            "t10k-labels-idx1-ubyte.gz": np.arange(20) % 10}
    sha = {}
    for name, arr in data.items():
        (directory / name).write_bytes(_idx(arr))
        sha[name] = hashlib.sha256(gzip.decompress((directory / name).read_bytes())).hexdigest()
    return sha


# ------------------------------------------------------------------ loopback server


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Static files; ``/short/<file>`` announces the full length but sends half and closes."""

    def log_message(self, *args: object) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if not self.path.startswith("/short/"):
            return super().do_GET()
        data = Path(self.directory, self.path.removeprefix("/short/")).read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2])
        self.close_connection = True
        return None


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """(base URL, directory) of a loopback HTTP server on an ephemeral port."""
    root = tmp_path_factory.mktemp("mirror")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_Handler, directory=root))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()
    server.server_close()


def _block(source: str, archive: Path, url: str, **extra: object) -> dict[str, object]:
    return {"source": source, "val_size": extra.pop("val_size", 10), "split_seed": 0,
            "mirror": url, "sha256": _sha256(archive), "md5": _md5(archive), **extra}


def _check_prepared(out: Path, sizes: dict[str, int], num_classes: int,
                    shape: tuple[int, ...]) -> dict[str, object]:
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["sizes"] == sizes
    assert manifest["num_classes"] == num_classes
    assert tuple(manifest["input_shape"]) == shape and manifest["dtype"] == "uint8"
    for split in SPLITS:
        s = load_split(out, split)
        assert s.x.dtype == np.uint8 and s.x.shape == (sizes[split], *shape)
        assert s.y.dtype == np.int64 and s.y.min() >= 0 and s.y.max() < num_classes
    return manifest


def _check_pipeline(out: Path, augment: str, padding: int, size: int) -> None:
    """Training and evaluation batches: right shape, normalised with the manifest."""
    manifest = json.loads((out / "manifest.json").read_text())
    pipe = build_input_pipeline(augment, padding, manifest["normalize"], manifest["input_size"])
    x = torch.as_tensor(load_split(out, "train").x)
    gen = torch.Generator().manual_seed(0)
    train, evalv = pipe.train(x, gen), pipe.eval(x)
    assert train.shape == evalv.shape == (len(x), x.shape[1], size, size)
    assert train.dtype == evalv.dtype == torch.float32 and torch.isfinite(train).all()
    mean = torch.tensor(manifest["normalize"]["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(manifest["normalize"]["std"]).view(1, -1, 1, 1)
    if size == x.shape[-1]:
        torch.testing.assert_close(evalv, (x.float() / 255 - mean) / std)
    lo, hi = (0 - mean) / std, (1 - mean) / std
    assert (train >= lo - 1e-5).all() and (train <= hi + 1e-5).all()


# ------------------------------------------------------------------ CIFAR


def test_download_then_prepare_uses_the_verified_archive(served: tuple[str, Path],
                                                         tmp_path: Path) -> None:
    """The download rule's function fetches + verifies; the preparer then reuses that
    file (its mirror is unreachable here, so any second fetch would fail)."""
    url, root = served
    make_cifar10(root / "cifar-10-python.tar.gz")
    block = _block("cifar10", root / "cifar-10-python.tar.gz", url, augment="crop_flip")
    dest = tmp_path / "resources" / "downloads" / "cifar10"  # download_outputs' directory
    records = D.download_source("cifar10", block, dest)
    assert records[0]["verified_by"] == ["sha256", "md5"]
    assert records[0]["url"] == f"{url}/cifar-10-python.tar.gz"
    assert sorted(p.name for p in dest.iterdir()) == ["cifar-10-python.tar.gz",
                                                      "cifar-10-python.tar.gz.json"]
    out = tmp_path / "results" / "data" / "c10"
    prepare_dataset("c10", {**block, "mirror": "http://127.0.0.1:9"}, out)
    _check_prepared(out, {"train": 40, "val": 10, "test": 20}, 10, (3, 32, 32))


@pytest.mark.parametrize("source", ["cifar10", "cifar100"])
def test_cifar_prepare(source: str, served: tuple[str, Path], tmp_path: Path) -> None:
    url, root = served
    name = "cifar-10-python.tar.gz" if source == "cifar10" else "cifar-100-python.tar.gz"
    arrays = (make_cifar10 if source == "cifar10" else make_cifar100)(root / name)
    block = _block(source, root / name, url, val_size=10 if source == "cifar10" else 20,
                   augment="crop_flip")
    out = tmp_path / "results" / "data" / source
    prepare_dataset(source, block, out)  # fetches into resources/downloads/<source> itself
    assert (tmp_path / "resources" / "downloads" / source / name).exists()
    assert not (tmp_path / "results" / "downloads").exists()  # rm -rf results keeps archives
    k = 10 if source == "cifar10" else 100
    sizes = {"train": 40, "val": 10, "test": 20} if k == 10 else {"train": 180, "val": 20,
                                                                  "test": 100}
    manifest = _check_prepared(out, sizes, k, (3, 32, 32))
    assert manifest["normalize"] == D_NORMALIZE[source]
    assert manifest["archives"][0]["sha256"] == _sha256(root / name)
    assert not (tmp_path / "resources" / "downloads" / source / name.split("-python")[0]).exists()
    test_x = arrays["test_batch" if k == 10 else "test"]
    np.testing.assert_array_equal(load_split(out, "test").x, test_x)  # pixels exactly
    pool = (np.concatenate([arrays[f"data_batch_{i}"] for i in range(1, 6)]) if k == 10
            else arrays["train"])
    val_idx = manifest["val_indices_in_train_pool"]
    np.testing.assert_array_equal(load_split(out, "val").x, pool[val_idx])
    assert set(load_split(out, "train").y) | set(load_split(out, "val").y) <= set(range(k))
    assert set(load_split(out, "test").y) == set(range(k))
    _check_pipeline(out, "crop_flip", 4, 32)


D_NORMALIZE = {
    "cifar10": {"mean": [0.4914, 0.4822, 0.4465], "std": [0.2023, 0.1994, 0.201]},
    "cifar100": {"mean": [0.5071, 0.4867, 0.4408], "std": [0.2675, 0.2565, 0.2761]},
}


def test_torchvision_class_defaults_are_torchvisions(served: tuple[str, Path]) -> None:
    """No override: torchvision's own URL, md5 and per-file md5 lists; a mirror only
    changes the URL (a subclass: torchvision's class itself is untouched)."""
    from torchvision import datasets

    block = {"source": "cifar10"}
    cls = D.torchvision_class("cifar10", block)
    assert cls.url == datasets.CIFAR10.url and cls.tgz_md5 == datasets.CIFAR10.tgz_md5
    assert cls.train_list == datasets.CIFAR10.train_list and cls.__name__ == "CIFAR10"
    mirrored = D.torchvision_class("cifar100", {"mirror": "http://127.0.0.1:1/x/"})
    assert mirrored.url == "http://127.0.0.1:1/x/cifar-100-python.tar.gz"
    assert mirrored.tgz_md5 == datasets.CIFAR100.tgz_md5
    assert datasets.CIFAR100.url.startswith("https://www.cs.toronto.edu/")
    (archive,) = D.archives_for("cifar10", block)
    assert archive.md5 == datasets.CIFAR10.tgz_md5 and archive.sha256 == \
        "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"


# ------------------------------------------------------------------ Tiny ImageNet, CUB


def test_tiny_imagenet_prepare(served: tuple[str, Path], tmp_path: Path) -> None:
    url, root = served
    make_tiny_imagenet(root / "tiny-imagenet-200.zip")
    block = _block("tiny_imagenet", root / "tiny-imagenet-200.zip", url, val_size=3,
                   input_size=32, augment="resized_crop_flip")
    out = tmp_path / "results" / "data" / "tiny"
    manifest = prepare_dataset("tiny", block, out)
    _check_prepared(out, {"train": 9, "val": 3, "test": 6}, 3, (3, 64, 64))
    assert manifest["classes"] == sorted(TINY_WNIDS) and manifest["input_size"] == 32
    assert manifest["normalize"] == {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    greys = 0
    for split in SPLITS:  # labels follow the folders / val_annotations.txt (colour = class)
        s = load_split(out, split)
        rgb = s.x.reshape(len(s.y), 3, -1).mean(-1)  # [n, 3]
        grey = np.ptp(rgb, axis=1) < 5  # greyscale JPEGs become 3 equal channels
        greys += int(grey.sum())
        np.testing.assert_array_equal(rgb.argmax(1)[~grey], s.y[~grey])
    assert greys == len(TINY_WNIDS)
    np.testing.assert_array_equal(np.bincount(load_split(out, "test").y), [2, 2, 2])
    _check_pipeline(out, "resized_crop_flip", 0, 32)
    _train_one_epoch(out, "resized_crop_flip", 0)


def _train_one_epoch(data_dir: Path, augment: str, padding: int) -> None:
    """One real training run (selfdistill.run) on the prepared set: train at input_size,
    evaluate every split through the matching evaluation view."""
    cfg = TrainConfig(epochs=1, milestones=(), seed=0, batch_size=4, augment=augment,
                      augment_padding=padding)
    spec = run.RunSpec(dataset_dir=str(data_dir), arch="cnn_digits", method="ce", param=None,
                       seed=0, gen=0, out_dir=str(data_dir.parent / "run"), train=cfg)
    run.train_run(spec)
    preds = np.load(data_dir.parent / "run" / "preds.npz")
    for split in SPLITS:
        n = len(load_split(data_dir, split).y)
        assert preds[f"{split}_logits"].shape == (n, 3)
        assert np.isfinite(preds[f"{split}_logits"]).all()


def test_cub200_prepare(served: tuple[str, Path], tmp_path: Path) -> None:
    url, root = served
    split = make_cub(root / "CUB_200_2011.tgz")
    block = _block("cub200", root / "CUB_200_2011.tgz", url, val_size=2, image_size=16,
                   augment="crop_flip")
    out = tmp_path / "results" / "data" / "cub"
    manifest = prepare_dataset("cub", block, out)
    _check_prepared(out, {"train": 4, "val": 2, "test": 6}, 3, (3, 16, 16))
    assert manifest["classes"] == ["001.Red_bird", "002.Green_bird", "003.Blue_bird"]
    test = load_split(out, "test")
    np.testing.assert_array_equal(test.y, split["test"])
    np.testing.assert_array_equal(test.x.reshape(6, 3, -1).mean(-1).argmax(1), test.y)
    pool = np.concatenate([load_split(out, "train").y, load_split(out, "val").y])
    assert sorted(pool) == sorted(split["train"])
    _check_pipeline(out, "crop_flip", 2, 16)
    _train_one_epoch(out, "crop_flip", 2)


# ------------------------------------------------------------------ Fashion-MNIST


def test_fashion_mnist_from_local_dir(tmp_path: Path) -> None:
    """Debian-style directory of idx .gz files, verified by their decompressed sha256."""
    sha = make_fashion_mnist(tmp_path / "debian")
    block = {"source": "fashion_mnist", "val_size": 10, "split_seed": 0,
             "local_dir": str(tmp_path / "debian"), "sha256": sha, "augment": "crop_flip"}
    out = tmp_path / "results" / "data" / "fm"
    manifest = prepare_dataset("fm", block, out)
    _check_prepared(out, {"train": 50, "val": 10, "test": 20}, 10, (1, 28, 28))
    pixels = load_split(out, "train").x / 255.0
    assert manifest["normalize"]["mean"] == pytest.approx([pixels.mean()])
    assert manifest["normalize"]["std"] == pytest.approx([pixels.std()])
    _check_pipeline(out, "crop_flip", 2, 28)
    subset = prepare_dataset("fm", {**block, "train_subset": 30, "image_size": 14},
                             tmp_path / "sub" / "d" / "fm")
    assert subset["sizes"] == {"train": 20, "val": 10, "test": 20}
    assert subset["input_shape"] == [1, 14, 14] and subset["input_size"] == 14


def test_fashion_mnist_torchvision_fallback(served: tuple[str, Path], tmp_path: Path) -> None:
    """No local copy: torchvision's FashionMNIST downloads from the mirror (md5-checked)."""
    url, root = served
    sha = make_fashion_mnist(root / "fmnist")
    md5 = {f: _md5(root / "fmnist" / f) for f in sha}
    block = {"source": "fashion_mnist", "val_size": 10, "split_seed": 0, "sha256": sha,
             "md5": md5, "local_dir": str(tmp_path / "absent"), "mirror": f"{url}/fmnist"}
    records = D.download_source("fashion_mnist", block, tmp_path / "dl")
    assert [r["sha256"] for r in records] == list(sha.values())
    assert sorted(p.name for p in (tmp_path / "dl").iterdir() if p.suffix == ".gz") == sorted(sha)
    assert not list((tmp_path / "dl").glob(".torchvision*"))  # scratch root removed
    with pytest.raises(D.DownloadError, match="torchvision could not download"):
        D.download_source("fashion_mnist", {**block, "md5": None}, tmp_path / "dl2")


@pytest.mark.skipif(not Path(D.FASHION_MNIST_DIR, "t10k-labels-idx1-ubyte.gz").exists(),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_real_fashion_mnist_matches_pinned_hashes(tmp_path: Path) -> None:
    """Debian's copies verify against the pinned (upstream) content sha256."""
    records = D.download_source("fashion_mnist", {"source": "fashion_mnist"}, tmp_path)
    assert all(r["verified_by"] == ["sha256"] for r in records)
    labels = gzip.decompress((tmp_path / "t10k-labels-idx1-ubyte.gz").read_bytes())
    assert np.bincount(np.frombuffer(labels, np.uint8, offset=8)).tolist() == [1000] * 10


# ------------------------------------------------------------------ failures


def _no_trusted_file(directory: Path, name: str) -> None:
    assert not (directory / name).exists()
    assert not (directory / (name + ".part")).exists()


def test_wrong_checksum_names_file_and_both_hashes(served: tuple[str, Path],
                                                   tmp_path: Path) -> None:
    url, root = served
    make_cifar10(root / "cifar-10-python.tar.gz")
    actual = _sha256(root / "cifar-10-python.tar.gz")
    block = _block("cifar10", root / "cifar-10-python.tar.gz", url, sha256="ab" * 32)
    dest = tmp_path / "dl"
    with pytest.raises(D.ChecksumError) as err:
        D.download_source("cifar10", block, dest)
    msg = str(err.value)
    assert "cifar-10-python.tar.gz" in msg and "ab" * 32 in msg and actual in msg
    assert "mirror" in msg and "sha256" in msg  # what to do
    _no_trusted_file(dest, "cifar-10-python.tar.gz")
    assert (dest / "cifar-10-python.tar.gz.corrupt").exists()
    with pytest.raises(D.ChecksumError, match="md5"):  # md5 (torchvision's check) too
        D.download_source("cifar10", {**block, "sha256": actual, "md5": "0" * 32}, dest)
    _no_trusted_file(dest, "cifar-10-python.tar.gz")
    D.download_source("cifar10", {**block, "sha256": actual}, dest)  # a rerun fetches again
    assert _sha256(dest / "cifar-10-python.tar.gz") == actual


def test_official_pin_rejects_a_different_archive(served: tuple[str, Path],
                                                  tmp_path: Path) -> None:
    """Without overrides the pinned official sha256 applies: a mirror's other file fails."""
    url, root = served
    make_cub(root / "CUB_200_2011.tgz")
    with pytest.raises(D.ChecksumError, match="0c685df5597a8b24909f6a7c9db6d11e"):
        D.download_source("cub200", {"source": "cub200", "mirror": url}, tmp_path)
    _no_trusted_file(tmp_path, "CUB_200_2011.tgz")


def test_truncated_download(served: tuple[str, Path], tmp_path: Path,
                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Server always sends half the announced bytes: after the retries a named error, and
    only a partial ``.part`` (kept for a resume) is left, never the final name."""
    monkeypatch.setattr(D, "BACKOFF_S", 0.0)
    url, root = served
    make_tiny_imagenet(root / "tiny-imagenet-200.zip")
    block = _block("tiny_imagenet", root / "tiny-imagenet-200.zip", f"{url}/short")
    with pytest.raises(D.ArchiveError, match="truncated: received .* after 4 attempts"):
        D.download_source("tiny_imagenet", block, tmp_path)
    assert not (tmp_path / "tiny-imagenet-200.zip").exists()
    part, size = tmp_path / "tiny-imagenet-200.zip.part", (root / "tiny-imagenet-200.zip").stat()
    assert not part.exists() or part.stat().st_size < size.st_size


def test_truncated_archive_with_matching_hash_fails_on_read(served: tuple[str, Path],
                                                            tmp_path: Path) -> None:
    """A truncated file whose (wrong) hash was given on purpose is never used: a named error
    says it matches the given hash and what to check, and leaves it in place (a re-download
    would give the same bytes), so it is not quarantined as a failed download would be."""
    url, root = served
    make_tiny_imagenet(root / "full.zip")
    data = (root / "full.zip").read_bytes()
    (root / "cut").mkdir(exist_ok=True)
    (root / "cut" / "tiny-imagenet-200.zip").write_bytes(data[: len(data) // 2])
    block = _block("tiny_imagenet", root / "cut" / "tiny-imagenet-200.zip", f"{url}/cut",
                   val_size=3)
    out = tmp_path / "results" / "data" / "tiny"
    with pytest.raises(D.ArchiveError, match=r"tiny-imagenet-200.zip cannot be read \(BadZip"
                       r".*matches the sha256/md5 given in datasets.<name>.sha256/md5") as err:
        prepare_dataset("tiny", block, out)
    assert "left in place" in str(err.value) and "hash you gave" in str(err.value)
    ddir = tmp_path / "resources" / "downloads" / "tiny_imagenet"
    assert _sha256(ddir / "tiny-imagenet-200.zip") == block["sha256"]
    assert not (ddir / "tiny-imagenet-200.zip.corrupt").exists()
    assert not (out / "manifest.json").exists()


def test_missing_file_in_mirror_and_in_archive(served: tuple[str, Path],
                                               tmp_path: Path) -> None:
    url, root = served
    with pytest.raises(D.DownloadError, match="cannot fetch .*nothing-here/CUB_200_2011.tgz"):
        D.download_source("cub200", {"mirror": f"{url}/nothing-here"}, tmp_path)
    (root / "noann").mkdir(exist_ok=True)
    make_tiny_imagenet(root / "noann" / "tiny-imagenet-200.zip", skip="val/val_annotations.txt")
    block = _block("tiny_imagenet", root / "noann" / "tiny-imagenet-200.zip",
                   f"{url}/noann", val_size=3)
    with pytest.raises(D.ArchiveError, match="has no tiny-imagenet-200/val/val_annotations.txt"):
        prepare_dataset("tiny", block, tmp_path / "results" / "data" / "tiny")


def test_local_directory_mirror_and_existing_file_reverified(tmp_path: Path) -> None:
    """``mirror`` may be a directory; a present archive is re-verified, never trusted."""
    (tmp_path / "mirror").mkdir()
    make_cub(tmp_path / "mirror" / "CUB_200_2011.tgz")
    archive = tmp_path / "mirror" / "CUB_200_2011.tgz"
    block = {"mirror": str(tmp_path / "mirror"), "sha256": _sha256(archive), "md5": None}
    dest = tmp_path / "dl"
    first = D.download_source("cub200", block, dest)
    assert first[0]["url"].startswith("file://")
    assert D.download_source("cub200", block, dest) == first  # already there: verified only
    with open(dest / "CUB_200_2011.tgz", "r+b") as fh:  # damaged after download
        fh.truncate(100)
    with pytest.raises(D.ChecksumError, match="CUB_200_2011.tgz"):
        D.ensure_archives("cub200", block, dest)
    _no_trusted_file(dest, "CUB_200_2011.tgz")


def test_unpinned_archive_records_its_hash_and_detects_change(tmp_path: Path) -> None:
    """Nothing pinned: trust on first use, recorded next to the file; a change is an error."""
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "x.bin").write_bytes(b"payload")
    archive = D.Archive("x.bin", "unused", None, None)
    record = D.fetch(archive, tmp_path / "dl", str(tmp_path / "m"))
    assert record["verified_by"] == [] and record["sha256"] == hashlib.sha256(b"payload").hexdigest()
    sidecar = json.loads((tmp_path / "dl" / "x.bin.json").read_text())
    assert sidecar["sha256"] == record["sha256"]
    (tmp_path / "dl" / "x.bin").write_bytes(b"changed")
    with pytest.raises(D.ChecksumError, match=record["sha256"]):
        D._trusted(tmp_path / "dl" / "x.bin", archive, "unused")
    _no_trusted_file(tmp_path / "dl", "x.bin")


def test_download_params_of_a_source() -> None:
    datasets = {"a": {"source": "cifar10", "mirror": "http://m"}, "b": {"source": "mnist1d"},
                "c": {"source": "cifar10", "mirror": "http://m"}}
    assert D.download_params(datasets, "cifar10")["mirror"] == "http://m"
    with pytest.raises(ValueError, match="datasets.c: source cifar10"):
        D.download_params({**datasets, "c": {"source": "cifar10", "mirror": "http://x"}},
                          "cifar10")
    assert D.download_outputs("cub200") == ["resources/downloads/cub200/CUB_200_2011.tgz"]
    assert D.download_dir("cub200") == Path("resources/downloads/cub200")


# ------------------------------------------------------------------ through snakemake


@pytest.mark.e2e
@pytest.mark.slow
def test_download_rule_through_snakemake(served: tuple[str, Path], tmp_path: Path) -> None:
    """snakemake builds the manifest of a fabricated CIFAR-10 through download_cifar10."""
    url, root = served
    make_cifar10(root / "cifar-10-python.tar.gz")
    block = _block("cifar10", root / "cifar-10-python.tar.gz", url, augment="crop_flip")
    # the real workflow, with an experiment that uses the fabricated dataset
    wf = copy_workflow(tmp_path / "wf")
    (wf / "c10.yaml").write_text(yaml.safe_dump({
        "datasets": {"c10": block}, "experiments": [{"dataset": "c10", "arch": "resnet18"}]}))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"),
                                                        os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "snakemake", "results/data/c10/manifest.json", "--cores", "1",
           "--configfile", "config/config.yaml", "c10.yaml"]
    proc = subprocess.run(cmd, cwd=wf, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    archive = wf / "resources" / "downloads" / "cifar10" / "cifar-10-python.tar.gz"
    assert _sha256(archive) == block["sha256"]
    assert "verified" in (wf / "logs" / "download" / "cifar10.log").read_text()
    manifest = json.loads((wf / "results" / "data" / "c10" / "manifest.json").read_text())
    assert manifest["sizes"] == {"train": 40, "val": 10, "test": 20}
    shutil.rmtree(wf / ".snakemake", ignore_errors=True)


def test_dag_build_import_stays_light() -> None:
    """download.smk imports selfdistill.download at parse time: no torch/torchvision/PIL,
    and pooch/requests only when a file is fetched."""
    code = ("import sys, selfdistill.download; print(sorted(m for m in "
            "('torch', 'torchvision', 'PIL', 'pandas', 'pooch', 'requests', 'tqdm') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"

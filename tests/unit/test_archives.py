"""Hostile archives at the data boundary (methods §5 datasets), built in the real formats
inside each test and served by the loopback server of ``test_download``: tar members that
would write outside (``..``, absolute, links, devices, setuid), a CIFAR batch whose pickle
calls ``os.system``, a user's folder in the download directory, a verified archive that
cannot be read, parallel prepares of one archive, a zip bomb and a PNG bomb.

Nothing is extracted any more, so each test also checks that nothing appeared anywhere:
the working directory (``tmp_path``) holds only the archive and its record afterwards.
"""

from __future__ import annotations

import io
import os
import pickle
import stat
import struct
import tarfile
import threading
import tracemalloc
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from selfdistill import download as D
from selfdistill.data import load_split, prepare_dataset
from selfdistill.sources import cifar, shared

from . import test_download
from .test_download import (
    TINY_WNIDS,
    _block,
    _sha256,
    make_cifar10,
    make_cifar100,
    make_tiny_imagenet,
)

# test_download's fixtures: the loopback server, and the working directory in tmp_path
served, _in_tmp_path = test_download.served, test_download._in_tmp_path

ARCHIVE = "cifar-10-python.tar.gz"
DDIR = Path("resources/downloads/cifar10")  # relative to tmp_path, the working directory


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _only_the_archive(tmp_path: Path, name: str = ARCHIVE, ddir: Path = DDIR) -> None:
    """Nothing but the archive and its record was written under the working directory."""
    parts = [str(Path(*ddir.parts[:k])) for k in range(1, len(ddir.parts) + 1)]
    assert _tree(tmp_path) == sorted([*parts, str(ddir / name), str(ddir / f"{name}.json")])


def _repack(src: Path, out: Path, first: list[tuple[tarfile.TarInfo, bytes | None]] = (),
            replace: dict[str, bytes] | None = None) -> None:
    """``src``'s members (``replace`` swaps the bytes of some), after the ``first`` ones."""
    replace = replace or {}
    with tarfile.open(src, "r:gz") as old, tarfile.open(out, "w:gz") as new:
        for info, data in first:
            new.addfile(info, io.BytesIO(data) if data is not None else None)
        for m in old.getmembers():
            data = replace.get(m.name, old.extractfile(m).read())
            m.size = len(data)
            new.addfile(m, io.BytesIO(data))


def _serve(served: tuple[str, Path], case: str, build: Callable[[Path], Any],
           name: str = ARCHIVE) -> tuple[Path, str]:
    """Build an archive into the server's ``case`` folder: (its path, the mirror URL)."""
    url, root = served
    (root / case).mkdir(exist_ok=True)
    build(root / case / name)
    return root / case / name, f"{url}/{case}"


def _info(name: str, kind: bytes = tarfile.REGTYPE, size: int = 0, mode: int = 0o644,
          linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.mode, info.linkname = kind, size, mode, linkname
    if kind == tarfile.CHRTYPE:
        info.devmajor, info.devminor = 1, 3  # /dev/null's numbers
    return info


# ------------------------------------------------------------------ hostile tar members


def _hostile(case: str, outside: Path) -> list[tuple[tarfile.TarInfo, bytes | None]]:
    """The members of each case; a real extraction would write ``outside``'s files."""
    planted = b"planted\n"
    return {
        "dotdot": [(_info("cifar-10-batches-py/../../../escaped.txt", size=8), planted)],
        "absolute": [(_info(str(outside / "absolute.txt"), size=8), planted)],
        "symlink": [(_info("cifar-10-batches-py/out", tarfile.SYMTYPE, linkname=str(outside)),
                     None),
                    (_info("cifar-10-batches-py/out/through_link.txt", size=8), planted)],
        "hardlink": [(_info("cifar-10-batches-py/victim", tarfile.LNKTYPE,
                            linkname=str(outside / "victim.txt")), None),
                     (_info("cifar-10-batches-py/victim", size=8), planted)],
        "device": [(_info("cifar-10-batches-py/null", tarfile.CHRTYPE), None)],
        "setuid": [(_info("cifar-10-batches-py/suid", size=8, mode=0o4755), planted)],
    }[case]


@pytest.mark.parametrize(("case", "why"), [
    ("dotdot", "'..' component"), ("absolute", "an absolute path"),
    ("symlink", "a symbolic link"), ("hardlink", "a hard link"), ("device", "a device file"),
    ("setuid", "setuid/setgid bits")])
def test_hostile_tar_member_is_refused_and_writes_nothing(
        case: str, why: str, served: tuple[str, Path], tmp_path: Path,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    outside = tmp_path_factory.mktemp("outside")
    (outside / "victim.txt").write_bytes(b"original\n")
    members = _hostile(case, outside)

    def build(out: Path) -> None:
        make_cifar10(out.with_suffix(".src"))
        _repack(out.with_suffix(".src"), out, first=members)

    archive, mirror = _serve(served, case, build)
    block = _block("cifar10", archive, mirror)
    with pytest.raises(D.ArchiveError, match=f"{ARCHIVE}: member .* is .*{why}") as err:
        prepare_dataset("c10", block, tmp_path / "out")
    assert repr(members[0][0].name) in str(err.value)  # the member, by name
    assert "mirror/sha256" in str(err.value)  # what to do
    assert _tree(outside) == ["victim.txt"]
    assert (outside / "victim.txt").read_bytes() == b"original\n"  # hard link: not overwritten
    _only_the_archive(tmp_path)  # nothing under the download dir or beside it


# ------------------------------------------------------------------ restricted unpickling


class _System:
    """A pickle that runs a shell command when it is loaded."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Any, ...]:
        return os.system, (self.command,)


def test_hostile_pickle_is_refused_before_anything_runs(served: tuple[str, Path],
                                                        tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    batch = {"batch_label": "data_batch_1", "labels": list(range(10)),
             "data": _System(f"touch {marker}"), "filenames": []}

    def build(out: Path) -> None:
        make_cifar10(out.with_suffix(".src"))
        _repack(out.with_suffix(".src"), out, replace={
            "cifar-10-batches-py/data_batch_1": pickle.dumps(batch, protocol=2)})

    archive, mirror = _serve(served, "pickle", build)
    glob = f"{os.system.__module__}.system"  # posix.system on Linux
    with pytest.raises(D.ArchiveError, match=rf"refuses global {glob} in cifar-10-batches-py/"
                                             rf"data_batch_1 of {ARCHIVE}"):
        prepare_dataset("c10", _block("cifar10", archive, mirror), tmp_path / "out")
    assert not marker.exists()
    _only_the_archive(tmp_path)


@pytest.mark.parametrize("obj", [eval, exec, getattr, __import__, os.popen, np.load,
                                 pickle.loads, zipfile.ZipFile])
def test_unpickler_admits_only_the_formats_globals(obj: Any) -> None:
    data = pickle.dumps({"data": obj}, protocol=2)
    with pytest.raises(D.ArchiveError, match=f"refuses global .*{obj.__name__} in here"):
        cifar.BatchUnpickler(io.BytesIO(data), "here").load()


def test_unpickler_reads_numpy_arrays_of_every_protocol() -> None:
    x = np.arange(3072 * 2, dtype=np.uint8).reshape(2, 3072)
    for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
        entry = {"data": x, "labels": [1, 2], "n": np.int64(7), "b": b"\x00\xff", "e": b""}
        got = cifar.BatchUnpickler(io.BytesIO(pickle.dumps(entry, protocol)), "t").load()
        np.testing.assert_array_equal(got["data"], x)
        assert got["labels"] == [1, 2] and got["n"] == 7 and got["b"] == b"\x00\xff"
        assert got["e"] == b""
    codec = pickle.dumps(b"abc", 2).replace(b"latin1", b"base64")  # _codecs.encode(.., base64)
    with pytest.raises(D.ArchiveError, match="not a readable CIFAR batch"):
        cifar._unpickle(codec, "t")
    alloc = pickle.dumps(b"", 2).replace(b")R", b"K\x05\x85R")  # bytes(5), not bytes()
    with pytest.raises(D.ArchiveError, match="not a readable CIFAR batch"):
        cifar._unpickle(alloc, "t")


# ------------------------------------------------------------------ torchvision's arrays


class _Py2Pickler(pickle._Pickler):  # type: ignore[name-defined]
    """Writes strings and bytes as Python 2's ``str`` (BINSTRING), as the releases' batches
    were written by cPickle; the numpy module is renamed to numpy 1's ``numpy.core``."""

    dispatch = pickle._Pickler.dispatch.copy()  # type: ignore[attr-defined]

    def save_py2_str(self, obj: str | bytes) -> None:
        data = obj if isinstance(obj, bytes) else obj.encode("latin1")
        head = (pickle.SHORT_BINSTRING + bytes([len(data)]) if len(data) < 256
                else pickle.BINSTRING + struct.pack("<i", len(data)))
        self.write(head + data)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str
    dispatch[str] = save_py2_str


def _py2_dumps(obj: Any) -> bytes:
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue().replace(b"cnumpy._core.", b"cnumpy.core.")


def _torchvision(root: Path, source: str, train: bool) -> Any:
    """torchvision's own reading of an extracted release (its per-file md5 lists, of the
    official files, replaced by existence checks, as for a re-pack)."""
    from torchvision import datasets

    base = datasets.CIFAR10 if source == "cifar10" else datasets.CIFAR100
    cls = type(base.__name__, (base,), {
        "train_list": [[f, None] for f, _ in base.train_list],
        "test_list": [[f, None] for f, _ in base.test_list], "meta": {**base.meta, "md5": None}})
    return cls(root=str(root), train=train, download=False)


@pytest.mark.parametrize("source", ["cifar10", "cifar100"])
@pytest.mark.parametrize("dumps", ["py2", "protocol5"])
def test_arrays_equal_torchvisions_reading(source: str, dumps: str, tmp_path: Path) -> None:
    """The releases' own pickles (Python 2 str, numpy.core) and a modern re-pack: our
    reader and torchvision's dataset classes give the same pixels, labels and classes."""
    made = tmp_path / "made.tar.gz"
    (make_cifar10 if source == "cifar10" else make_cifar100)(made)
    redo = _py2_dumps if dumps == "py2" else (lambda o: pickle.dumps(o, protocol=5))
    with tarfile.open(made, "r:gz") as tar:
        objs = {m.name: pickle.loads(tar.extractfile(m).read()) for m in tar if m.isfile()}
    archive = tmp_path / "release.tar.gz"
    _repack(made, archive, replace={n: redo(o) for n, o in objs.items()})
    with tarfile.open(archive, "r:gz") as tar:
        tar.extractall(tmp_path / "extracted", filter="data")
    x_pool, y_pool, x_test, y_test, classes = cifar.cifar_arrays(archive, source)
    for train, (x, y) in ((True, (x_pool, y_pool)), (False, (x_test, y_test))):
        tv = _torchvision(tmp_path / "extracted", source, train)
        assert x.dtype == np.uint8 and x.shape == (len(tv), 3, 32, 32) and x.flags.c_contiguous
        np.testing.assert_array_equal(x, tv.data.transpose(0, 3, 1, 2))
        np.testing.assert_array_equal(y, np.asarray(tv.targets))
        assert y.dtype == np.int64 and classes == list(tv.classes)


# ------------------------------------------------------------------ the download directory


def test_users_folder_in_the_download_dir_survives(served: tuple[str, Path],
                                                   tmp_path: Path) -> None:
    """``--download-dir`` pointed at a torchvision data root: its extracted
    ``cifar-10-batches-py/`` is the user's, and preparing leaves it as it was."""
    archive, mirror = _serve(served, "keep", make_cifar10)
    users = tmp_path / DDIR / "cifar-10-batches-py"
    users.mkdir(parents=True)
    (users / "keep.txt").write_text("mine\n")
    (users / "data_batch_1").write_bytes(b"the user's own file")
    prepare_dataset("c10", _block("cifar10", archive, mirror), tmp_path / "results" / "c10")
    assert (users / "keep.txt").read_text() == "mine\n"
    assert (users / "data_batch_1").read_bytes() == b"the user's own file"
    assert sorted(p.name for p in (tmp_path / DDIR).iterdir()) == sorted([
        ARCHIVE, f"{ARCHIVE}.json", "cifar-10-batches-py"])


def test_verified_archive_that_cannot_be_read_is_left_in_place(served: tuple[str, Path],
                                                               tmp_path: Path) -> None:
    """A cut-short archive whose hash was given: a named error that says it matches that
    hash and what to check; the file stays (a re-download gives the same bytes)."""
    def build(out: Path) -> None:
        make_cifar10(out.with_suffix(".src"))
        data = out.with_suffix(".src").read_bytes()
        out.write_bytes(data[: len(data) // 2])

    archive, mirror = _serve(served, "cut", build)
    block = _block("cifar10", archive, mirror)
    with pytest.raises(D.ArchiveError, match=rf"{ARCHIVE} cannot be read .* yet it matches "
                                             r"the sha256/md5 given") as err:
        prepare_dataset("c10", block, tmp_path / "out")
    assert "left in place" in str(err.value)
    assert _sha256(tmp_path / DDIR / ARCHIVE) == block["sha256"]
    _only_the_archive(tmp_path)  # no .corrupt, no extraction folder


def test_reading_quarantines_only_what_no_hash_vouches_for(tmp_path: Path) -> None:
    """The official pin: left in place, 'check this machine'; no hash at all: moved aside."""
    bad = tmp_path / ARCHIVE
    bad.write_bytes(b"not a gzip file")
    pinned = {"verified_by": ["sha256"], "sha256": D.SOURCES["cifar10"][0].sha256}
    with pytest.raises(D.ArchiveError, match="matches the pinned sha256 of the official "
                                             "release.*check this machine"):
        with shared.reading(bad, pinned), tarfile.open(bad, "r|gz") as tar:
            tar.next()
    assert bad.exists()
    with pytest.raises(D.ArchiveError, match="No hash vouches for it .* moved aside"):
        with shared.reading(bad, {"verified_by": [], "sha256": "0" * 64}):
            tarfile.open(bad, "r|gz").next()
    assert not bad.exists() and (tmp_path / f"{ARCHIVE}.corrupt").exists()


def test_parallel_prepares_of_one_archive(served: tuple[str, Path], tmp_path: Path) -> None:
    """Two prepares (Snakemake jobs of two dataset blocks) read one archive at once: both
    succeed with the same data, and the download directory is not written."""
    archive, mirror = _serve(served, "parallel", make_cifar10)
    block = _block("cifar10", archive, mirror)
    D.download_source("cifar10", block, tmp_path / DDIR)
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / DDIR).iterdir()}
    start, errors = threading.Barrier(2), []

    def run(name: str) -> None:
        try:
            start.wait()
            prepare_dataset(name, block, tmp_path / "results" / name)
        except BaseException as err:  # reported below
            errors.append(err)

    threads = [threading.Thread(target=run, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for split in ("train", "val", "test"):
        a, b = (load_split(tmp_path / "results" / n, split) for n in ("a", "b"))
        np.testing.assert_array_equal(a.x, b.x)
        np.testing.assert_array_equal(a.y, b.y)
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / DDIR).iterdir()} == before


# ------------------------------------------------------------------ bombs


TINY = "tiny-imagenet-200.zip"
TINY_DIR = Path("resources/downloads/tiny_imagenet")


def test_zip_bomb_is_refused_before_it_is_read(served: tuple[str, Path],
                                               tmp_path: Path) -> None:
    """A ~100 kB zip whose wnids.txt expands to 96 MiB: named error citing the member,
    raised from the declared size, so the prepare never holds more than a few MiB."""
    def build(out: Path) -> None:
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
            with zf.open("tiny-imagenet-200/wnids.txt", "w") as fh:
                zeros = bytes(1 << 20)
                for _ in range(96):
                    fh.write(zeros)

    archive, mirror = _serve(served, "zipbomb", build, TINY)
    assert archive.stat().st_size < 1 << 20
    tracemalloc.start()
    try:
        with pytest.raises(D.ArchiveError, match=r"tiny-imagenet-200/wnids.txt in "
                           rf"{TINY} declares 96 MiB uncompressed, over the 64 MiB bound"):
            prepare_dataset("tiny", _block("tiny_imagenet", archive, mirror, val_size=3),
                            tmp_path / "out")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, peak
    _only_the_archive(tmp_path, TINY, TINY_DIR)


def test_zip_members_are_streamed_with_a_bound(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "z.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("big.txt", b"x" * 5000)
    with zipfile.ZipFile(tmp_path / "z.zip") as zf:
        assert shared.zip_bytes(zf, "big.txt", tmp_path / "z.zip") == b"x" * 5000
        with pytest.raises(D.ArchiveError, match="big.txt in z.zip declares 0 MiB"):
            shared.zip_bytes(zf, "big.txt", tmp_path / "z.zip", limit=4999)


def _png(width: int, height: int) -> bytes:
    """A real 8 x 8 PNG whose IHDR (CRC fixed) declares ``width`` x ``height``."""
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def test_png_bomb_in_an_archive_is_a_named_error(served: tuple[str, Path],
                                                 tmp_path: Path) -> None:
    bomb = f"tiny-imagenet-200/train/{TINY_WNIDS[0]}/images/{TINY_WNIDS[0]}_1.JPEG"

    def build(out: Path) -> None:
        make_tiny_imagenet(out.with_suffix(".src"))
        with zipfile.ZipFile(out.with_suffix(".src")) as src, zipfile.ZipFile(out, "w") as zf:
            for info in src.infolist():
                zf.writestr(info, _png(100_000, 100_000) if info.filename == bomb
                            else src.read(info))

    archive, mirror = _serve(served, "pngbomb", build, TINY)
    with pytest.raises(D.ArchiveError, match=rf"{bomb} in {TINY}: its header declares .*"
                                             r"decompression bomb"):
        prepare_dataset("tiny", _block("tiny_imagenet", archive, mirror, val_size=3),
                        tmp_path / "out")
    assert not (tmp_path / "out" / "manifest.json").exists()


@pytest.mark.parametrize(("width", "height"), [(9000, 9000), (100_000, 100_000), (1, 10 ** 8)])
def test_oversized_image_is_refused_before_decoding(width: int, height: int) -> None:
    """Above our bound but below PIL's own (9000 x 9000 = 81 M), and far above it."""
    with pytest.raises(D.ArchiveError, match=r"x.png in a.zip: its header declares .* over "
                                             r"the bound of 67 M pixels"):
        shared.image_array(_png(width, height), 32, "x.png in a.zip")
    assert shared.image_array(_png(8, 8), 8, "ok").shape == (3, 8, 8)


def test_setuid_check_sees_the_bits() -> None:
    """The member check reads the mode bits, not just the type."""
    assert cifar._refusal(_info("a/b", mode=0o755)) is None
    assert "setuid" in cifar._refusal(_info("a/b", mode=0o755 | stat.S_ISGID))
    assert cifar._refusal(_info("a", tarfile.DIRTYPE, mode=0o755)) is None
    assert "special file" in cifar._refusal(_info("a/f", tarfile.FIFOTYPE))


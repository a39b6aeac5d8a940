"""Atomic file output and hashing.

Every file the pipeline writes goes through :func:`atomic_path`: it is written to a
temporary name in the same directory and renamed into place only when complete, so a
killed job never leaves a half-written file that a rerun would trust. A write that fails
(disk full, ...) raises an OSError that keeps its errno and names the file and the fix.

The temporary name says who writes it: ``.<name>.selfdistill-<host>-<pid>-<random>.tmp``
(:func:`temp_writer` reads it back), so the cleanup at a run's start
(:func:`selfdistill.workdir.remove_orphan_temp_files`) removes only the files of writers
that are gone, never a user's ``.notes.tmp`` or a live writer's file.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import hashlib
import json
import os
import re
import socket
import tempfile
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "atomic_path",
    "ensure_writable_dir",
    "read_json",
    "sha256_file",
    "temp_host",
    "temp_writer",
    "write_csv",
    "write_json",
    "write_npz",
    "write_text",
    "write_torch",
]

# what to do about a failed write, by errno (the rest: the generic advice below)
_WRITE_FIXES = {
    errno.ENOSPC: "free space or point results/ elsewhere",
    errno.EDQUOT: "free space within your quota or point results/ elsewhere",
    errno.EROFS: "the file system is read-only: run from a writable working directory",
    errno.EACCES: "fix the permissions of its directory or run from a writable working directory",
    errno.EPERM: "fix the permissions of its directory or run from a writable working directory",
    errno.EIO: "the storage reported an I/O error: check the disk, then re-run",
}

TEMP_MARK = "selfdistill"  # the mark of this project's temporary names
# .<name>.selfdistill-<host>-<pid>-<random>.tmp; mkstemp's random part is 8 of [a-z0-9_]
_TEMP_NAME = re.compile(rf"\.(?P<name>.+)\.{TEMP_MARK}-(?P<host>[A-Za-z0-9._-]+)-"
                        rf"(?P<pid>\d+)-[a-z0-9_]{{8}}\.tmp")


def temp_host() -> str:
    """This host's name as temporary names spell it (characters of a file name only)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname()) or "localhost"


def temp_writer(path: str | os.PathLike) -> tuple[str, int] | None:
    """(host, pid) of the :func:`atomic_path` write whose temporary file ``path`` is, or
    None when ``path`` does not carry this project's temporary name."""
    m = _TEMP_NAME.fullmatch(Path(path).name)
    return (m["host"], int(m["pid"])) if m else None


def ensure_writable_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` if needed and check it is writable, with an error that says what to do."""
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise PermissionError(f"cannot create output directory {p}: {err.strerror}. "
                              f"Choose a writable location or fix its permissions.") from err
    if not os.access(p, os.W_OK | os.X_OK):
        raise PermissionError(f"output directory {p} is not writable. Fix its permissions "
                              f"(e.g. chmod u+w {p}) or run from a writable working directory.")
    return p


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` if the block succeeds.

    The temporary name, ``.<name>.selfdistill-<host>-<pid>-<random>.tmp``, names this
    process as its writer (:func:`temp_writer`). An OSError while writing (disk full,
    quota, read-only file system) is raised again as :func:`write_error`: same class and
    errno, with ``path`` and the fix in its message.
    """
    target = Path(path)
    directory = ensure_writable_dir(target.parent)
    prefix = f".{target.name}.{TEMP_MARK}-{temp_host()}-{os.getpid()}-"
    try:
        fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=directory)
    except OSError as err:  # e.g. no inodes left
        raise write_error(err, target) from err
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; use the usual mode
        os.replace(tmp_path, target)
    except OSError as err:
        named = write_error(err, target)
        if named is err:  # named already, by a nested write
            raise
        raise named from err
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_error(err: OSError, target: str | os.PathLike) -> OSError:
    """``err`` (raised while writing ``target``) as an error of the same class and errno
    whose message names ``target``, the errno's name and the fix; an error already named
    (a nested write) is returned as it is."""
    if getattr(err, "target", None) is not None:
        return err
    code = err.errno
    name = errno.errorcode.get(code, "") if code is not None else ""
    what = os.strerror(code).lower() if code is not None else str(err)
    fix = _WRITE_FIXES.get(code, "check the file system, then re-run")  # type: ignore[arg-type]
    message = f"{what} while writing {target}" + (f" ({name})" if name else "") + f": {fix}"
    try:
        named = type(err)(message)  # PermissionError stays a PermissionError
    except TypeError:  # a subclass with another constructor
        named = OSError(message)
    named.errno = code  # the code stays; the message stays ours (no strerror set)
    named.target = str(target)  # type: ignore[attr-defined]
    return named


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """``data`` to ``path`` atomically; a failed write names ``path`` (:func:`write_error`)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    with open(path) as fh:
        return json.load(fh)


def write_csv(path: str | os.PathLike, rows: Sequence[Mapping[str, Any]],
              fieldnames: Sequence[str] | None = None) -> None:
    """Write dict rows as CSV (columns: ``fieldnames`` or the first row's keys)."""
    names = list(fieldnames if fieldnames is not None else (rows[0].keys() if rows else []))
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=names, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _csv_value(row.get(k)) for k in names})


def _csv_value(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v)  # shortest round-trip representation: CSVs reload bit-identically
    return v


def write_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """``np.savez`` layout, but with fixed zip timestamps so equal arrays give equal bytes."""
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zf:
        for name, arr in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with zf.open(info, "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, np.asanyarray(arr), allow_pickle=False)


class _RecordingWriter:
    """A binary file whose failed ``write`` keeps its OSError (torch's zip writer reports
    one only as a RuntimeError without the errno)."""

    def __init__(self, fh: Any) -> None:
        self.fh, self.error = fh, None

    def write(self, data: bytes) -> int:
        try:
            return self.fh.write(data)
        except OSError as err:
            self.error = err
            raise

    def flush(self) -> None:
        self.fh.flush()


def write_torch(path: str | os.PathLike, obj: Any) -> None:
    """``torch.save(obj)`` to ``path`` atomically, through a file object (the zip records
    then carry no temporary file name, so equal objects give equal bytes); a failed write
    is an OSError naming ``path`` and its errno (:func:`write_error`)."""
    import torch  # only the writers of checkpoints need it

    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        writer = _RecordingWriter(fh)
        try:
            torch.save(obj, writer)  # type: ignore[arg-type]
        except RuntimeError as err:
            if writer.error is None:
                raise
            raise writer.error from err


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()

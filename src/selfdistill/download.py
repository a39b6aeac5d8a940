"""Verified downloads of the paper-scale datasets (methods §2 data, §5 paper-scale grid).

Every archive is fetched from its official URL, or from a mirror (the dataset block's
``mirror``: a base URL or a local directory holding files of the same names), written to
``<file>.part``, verified, and only then renamed to its final name. HTTP goes through
pooch's ``HTTPDownloader`` (requests; a tqdm progress bar when stderr is a terminal):
up to :data:`RETRIES` further attempts with exponential backoff (:data:`BACKOFF_S`) after
a connection error, HTTP 5xx/429 or a truncated body, each resuming the ``.part`` with a
Range request where the server answers 206 and restarting it otherwise; each socket read
waits at most :data:`READ_TIMEOUT_S` and the whole download :data:`DEADLINE_S`
(:class:`DownloadTimeoutError`, the ``.part`` kept for a resume). A file that fails
verification is moved aside to ``<file>.corrupt`` and a named error (:class:`ChecksumError`,
:class:`ArchiveError`) says which file, the expected and actual sha256, and what to do; a
rerun therefore never trusts a bad file. The record names the final URL after redirects.

Pinned checksums (``SOURCES``), published values that the official archives match:

- CIFAR-10/100 ``.tar.gz``: sha256 pinned; md5 is torchvision's own class attribute
  (``CIFAR10.tgz_md5``); the preparer then reads the verified archive with the project's
  own streaming reader (:mod:`selfdistill.sources.cifar`), extracting nothing;
- CUB-200-2011 ``.tgz``: sha256 and md5 pinned;
- Tiny ImageNet ``.zip``: md5 pinned, sha256 NOT pinned (``None``): the computed sha256
  is recorded next to the archive and in the prepared manifest; set the dataset's
  ``sha256`` to pin it;
- Fashion-MNIST: sha256 of the four *decompressed* idx files (the same for the upstream
  ``.gz`` files and Debian's ``dataset-fashion-mnist`` copies, whose gzip headers differ).

A dataset block's ``sha256`` / ``md5`` replace the pinned values (a mirror that serves
another release on purpose, or the tests' fabricated archives): giving either one means
"not the official file", so only the hashes given are checked. After every successful
fetch the record (url, sha256, md5, what verified it) is written to ``<file>.json``.

Archives live under ``resources/downloads/<source>/`` (:func:`download_dir`), outside
``results/``, so that deleting the results never deletes gigabytes of downloads.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .io import read_json, write_json

__all__ = [
    "SOURCES",
    "Archive",
    "ArchiveError",
    "ChecksumError",
    "DownloadError",
    "DownloadTimeoutError",
    "archives_for",
    "download_dir",
    "download_outputs",
    "download_params",
    "download_source",
    "ensure_archives",
    "fetch",
    "move_aside",
    "source_url",
    "torchvision_class",
]

log = logging.getLogger(__name__)
USER_AGENT = "selfdistill-download/1"
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"  # Debian's dataset-fashion-mnist


class DownloadError(RuntimeError):
    """An archive could not be fetched (network, mirror, missing file)."""


class ChecksumError(DownloadError):
    """An archive's sha256 or md5 differs from the expected value."""


class ArchiveError(DownloadError):
    """An archive is truncated, unreadable, or lacks a file the preparer needs."""


@dataclass(frozen=True)
class Archive:
    """One file to fetch. ``gzip_content``: the hashes are of the decompressed bytes."""

    filename: str
    url: str
    sha256: str | None
    md5: str | None = None
    gzip_content: bool = False


def _cifar_md5(source: str) -> str:
    """torchvision's own md5 of the CIFAR archive (its class attribute ``tgz_md5``)."""
    from torchvision import datasets

    return (datasets.CIFAR10 if source == "cifar10" else datasets.CIFAR100).tgz_md5


_FMNIST = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
SOURCES: dict[str, tuple[Archive, ...]] = {
    "cifar10": (Archive(
        "cifar-10-python.tar.gz", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"),),
    "cifar100": (Archive(
        "cifar-100-python.tar.gz", "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        "85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7"),),
    "tiny_imagenet": (Archive(
        "tiny-imagenet-200.zip", "http://cs231n.stanford.edu/tiny-imagenet-200.zip",
        None, "90528d7ca1a48142e341f4ef8d21d0de"),),
    "cub200": (Archive(
        "CUB_200_2011.tgz",
        "https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz?download=1",
        "0c685df5597a8b24909f6a7c9db6d11e008733779a671760afef78feb49bf081",
        "97eceeb196236b17998738112f37df78"),),
    "fashion_mnist": tuple(Archive(f, _FMNIST + f, h, None, gzip_content=True) for f, h in (
        ("train-images-idx3-ubyte.gz",
         "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
        ("train-labels-idx1-ubyte.gz",
         "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
        ("t10k-images-idx3-ubyte.gz",
         "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
        ("t10k-labels-idx1-ubyte.gz",
         "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
    )),
}
OVERRIDE_KEYS = ("mirror", "sha256", "md5", "local_dir")
# Archives live outside results/ so that ``rm -rf results`` keeps gigabytes of downloads.
DOWNLOAD_ROOT = "resources"


def _override(value: Any, filename: str) -> Any:
    """A config checksum: one string (single-archive sources) or ``{filename: hash}``."""
    return value.get(filename) if isinstance(value, Mapping) else value


def archives_for(source: str, params: Mapping[str, Any]) -> tuple[Archive, ...]:
    """The archives of ``source`` with the dataset block's ``sha256``/``md5`` overrides."""
    if source not in SOURCES:
        raise KeyError(f"source {source!r} has no download; known: {sorted(SOURCES)}")
    sha_o, md5_o = params.get("sha256"), params.get("md5")
    out = []
    for a in SOURCES[source]:
        md5 = a.md5 if a.md5 or not source.startswith("cifar") else _cifar_md5(source)
        if a.gzip_content:  # Fashion-MNIST: md5 overrides are for torchvision's .gz check
            out.append(replace(a, sha256=_override(sha_o, a.filename) if sha_o else a.sha256))
        elif sha_o or md5_o:  # another release: only the hashes given are checked
            out.append(replace(a, sha256=_override(sha_o, a.filename) if sha_o else None,
                               md5=_override(md5_o, a.filename) if md5_o else None))
        else:
            out.append(replace(a, md5=md5))
    return tuple(out)


def source_url(archive: Archive, mirror: str | None) -> str:
    """Official URL, or ``mirror`` (base URL or local directory) joined with the filename."""
    if not mirror:
        return archive.url
    if "://" in mirror:
        return mirror.rstrip("/") + "/" + archive.filename
    return Path(mirror, archive.filename).resolve().as_uri()


def download_params(datasets: Mapping[str, Mapping[str, Any]], source: str) -> dict[str, Any]:
    """The download settings of ``source`` from the config's dataset blocks using it.

    Two blocks with the same source must agree on them (one archive per source).
    """
    found: dict[str, Any] | None = None
    for name, block in datasets.items():
        if block.get("source") != source:
            continue
        mine = {k: block.get(k) for k in OVERRIDE_KEYS}
        if found is not None and mine != found:
            raise ValueError(f"datasets.{name}: source {source} is also used by another block "
                             f"with different {list(OVERRIDE_KEYS)} ({found} vs {mine}); "
                             f"one archive serves every block of a source, so make them equal.")
        found = mine
    return found or dict.fromkeys(OVERRIDE_KEYS)


def download_dir(source: str, root: str | Path = DOWNLOAD_ROOT) -> Path:
    """Where the archives of ``source`` live: ``{root}/downloads/{source}``, relative to the
    working directory (the workflow's root) unless ``root`` is absolute."""
    return Path(root) / "downloads" / source


def download_outputs(source: str, root: str = DOWNLOAD_ROOT) -> list[str]:
    """The download rule's output paths for ``source``: ``{root}/downloads/{source}/{file}``."""
    return [f"{root}/downloads/{source}/{a.filename}" for a in SOURCES[source]]


def _hashes(path: Path, gzip_content: bool) -> tuple[str, str]:
    sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    try:
        with (gzip.open(path, "rb") if gzip_content else open(path, "rb")) as fh:
            while block := fh.read(1 << 20):
                sha.update(block)
                md5.update(block)
    except (OSError, EOFError) as err:  # truncated or not gzip
        bad = move_aside(path)
        raise ArchiveError(f"{path.name} cannot be decompressed ({err}); it is truncated or "
                           f"not a gzip file. Moved aside to {bad}; re-run to download it "
                           f"again.") from err
    return sha.hexdigest(), md5.hexdigest()


def move_aside(path: Path) -> Path:
    """Rename a bad file to ``<name>.corrupt`` so that nothing trusts it again."""
    name = path.name[:-5] if path.name.endswith(".part") else path.name
    bad = path.with_name(name + ".corrupt")
    os.replace(path, bad)
    return bad


def verify(path: Path, archive: Archive, url: str, final: Path | None = None) -> dict[str, Any]:
    """Check ``path`` against ``archive``'s hashes; return the record or move it aside + raise."""
    sha, md5 = _hashes(path, archive.gzip_content)
    what = "sha256 of the decompressed file" if archive.gzip_content else "sha256"
    for kind, want, got in (("sha256", archive.sha256, sha), ("md5", archive.md5, md5)):
        if want is not None and want.lower() != got:
            bad = move_aside(path)
            raise ChecksumError(
                f"{(final or path).name} (from {url}) failed verification: {kind} is {got}, "
                f"expected {want}; its {what} is {sha} (expected sha256: {archive.sha256}). "
                f"The file was moved aside to {bad}; it is never used. Re-run to download it "
                f"again; if it fails again the mirror serves a different or damaged file: fix "
                f"datasets.<name>.mirror, or set datasets.<name>.sha256/md5 to the values of "
                f"the release you mean to use.")
    pinned = [k for k, v in (("sha256", archive.sha256), ("md5", archive.md5)) if v]
    if not pinned:
        log.warning("%s: no checksum pinned; recording sha256 %s (trust on first use)",
                    path.name, sha)
    return {"file": archive.filename, "url": url, "sha256": sha, "md5": md5,
            "verified_by": pinned, "hash_of": "decompressed" if archive.gzip_content else "file"}


# ------------------------------------------------------------------ fetching

READ_TIMEOUT_S = 60.0  # per socket read: connecting, the headers, each chunk of the body
DEADLINE_S = 3 * 3600.0  # overall, per file, all attempts: CUB's 1.1 GB at ~100 kB/s
RETRIES = 3  # further attempts after a connection error, HTTP 5xx/429 or a truncated body
BACKOFF_S = 2.0  # wait before further attempt k: BACKOFF_S * 2**(k-1), i.e. 2, 4, 8 s
CHUNK = 1 << 16  # bytes per read: a cut connection loses the chunk being read


class DownloadTimeoutError(DownloadError):
    """A download did not finish within its overall deadline (:data:`DEADLINE_S`)."""


@dataclass
class _Failure:
    """Why one attempt did not deliver the whole file (every such failure is retried)."""

    text: str
    truncated: bool = False


class _Retry(Exception):
    """Raised by the response hook when the server's answer cannot be appended."""


class _Attempt:
    """One GET of a URL appended to an open ``.part`` file, as requests' response hook sees
    it: the final URL after redirects, whether the server resumed (206) or restarted (200)
    the transfer, the size to expect, and a watchdog that shuts the connection at the
    deadline (a read blocks until its chunk is full, so a drip never reaches a check)."""

    def __init__(self, fh: Any, offset: int, deadline_at: float) -> None:
        self.fh, self.offset, self.deadline_at = fh, offset, deadline_at
        self.url: str | None = None
        self.expected: int | None = None
        self.resumed = self.timed_out = False
        self._response: Any = None
        self._timer: threading.Timer | None = None

    def hook(self, resp: Any, *args: Any, **kwargs: Any) -> Any:
        if resp.is_redirect or resp.status_code not in (200, 206):
            return resp  # a hop of a redirect (called again for the next), or raise_for_status
        self.url = resp.url
        if resp.status_code == 206:
            got = resp.headers.get("Content-Range", "")
            if not got.startswith(f"bytes {self.offset}-"):
                resp.close()
                self._restart()
                raise _Retry(f"asked for bytes {self.offset}- and got {got!r}; starting over")
            self.resumed = self.offset > 0
        elif self.offset:  # 200: the server ignored the Range header, the body is whole
            log.info("%s: the server does not resume; downloading from the start", resp.url)
            self._restart()
        length = resp.headers.get("Content-Length")
        self.expected = self.offset + int(length) if length is not None else None
        self._response = resp
        self._timer = threading.Timer(max(0.0, self.deadline_at - time.monotonic()), self._abort)
        self._timer.daemon = True
        self._timer.start()
        return resp

    def _restart(self) -> None:
        self.fh.seek(0)
        self.fh.truncate()
        self.offset = 0

    def _abort(self) -> None:
        """The deadline: make the blocked read return by shutting the socket down."""
        self.timed_out = True
        raw = self._response.raw
        try:
            if hasattr(raw, "shutdown"):  # urllib3 >= 2.3
                raw.shutdown()
            else:
                raw.connection.sock.shutdown(socket.SHUT_RDWR)
        except (AttributeError, OSError):
            self._response.close()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()


def _progressbar() -> bool:
    """pooch's tqdm bar on an interactive terminal only (rule logs get the log lines)."""
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


def _get(url: str, part: Path, timeout: float,
         deadline_at: float) -> tuple[_Attempt, BaseException | None]:
    """One attempt: pooch's HTTPDownloader appends ``url`` to ``part``, asking for the rest
    with a Range header when ``part`` already holds bytes. Returns the attempt and the
    exception that ended it (``None`` when the body arrived in full)."""
    import pooch
    import requests

    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    left = max(0.1, min(timeout, deadline_at - time.monotonic()))
    with open(part, "ab") as fh:
        attempt = _Attempt(fh, offset, deadline_at)
        http = pooch.HTTPDownloader(progressbar=_progressbar(), chunk_size=CHUNK,
                                    headers=headers, hooks={"response": attempt.hook},
                                    timeout=(left, left))
        try:
            http(url, fh, None)
            failure = None
        except (requests.RequestException, _Retry) as err:
            failure = err
        finally:
            attempt.stop()
    return attempt, failure


def _why(url: str, part: Path, attempt: _Attempt, failure: BaseException | None,
         hint: str) -> _Failure | None:
    """``None`` when the attempt delivered the whole file; the reason to retry otherwise;
    a :class:`DownloadError` for what a retry cannot fix (HTTP 404 and other 4xx)."""
    import requests

    size = part.stat().st_size if part.exists() else 0
    if attempt.expected is not None and size < attempt.expected:
        return _Failure(f"truncated: received {size} of {attempt.expected} bytes", True)
    if failure is None:
        return None
    if isinstance(failure, requests.HTTPError) and failure.response is not None:
        status = failure.response.status_code
        if status == 416:  # the .part is not a prefix the server can continue
            part.unlink(missing_ok=True)
        elif status < 500 and status != 429:
            raise DownloadError(f"cannot fetch {url}: {failure}. {hint}") from failure
        return _Failure(f"HTTP {status}")
    if isinstance(failure, (requests.ConnectionError, requests.Timeout, _Retry,
                            requests.exceptions.ChunkedEncodingError)):
        return _Failure(str(failure))
    raise DownloadError(f"cannot fetch {url}: {failure}. {hint}") from failure


def _kept(part: Path) -> str:
    """What is left of a failed download: a ``.part`` to resume (an empty one is removed)."""
    size = part.stat().st_size if part.exists() else 0
    if not size:
        part.unlink(missing_ok=True)
        return "nothing was received"
    return (f"{size} bytes are kept in {part} and a re-run continues from there where the "
            f"server allows")


def _download(url: str, part: Path, *, timeout: float, deadline: float, retries: int,
              backoff: float) -> tuple[str, bool]:
    """Fetch ``url`` into ``part``: up to ``retries`` further attempts with exponential
    backoff, each resuming from the bytes already in ``part`` where the server answers a
    Range request (206) and restarting otherwise, all within ``deadline`` seconds.
    Returns the final URL after redirects and whether any attempt resumed."""
    name = part.name.removesuffix(".part")
    hint = (f"Check the network, or set datasets.<name>.mirror to a reachable base URL or "
            f"to a local directory that holds {name}.")
    deadline_at, resumed, failure = time.monotonic() + deadline, False, _Failure("")
    for k in range(1, retries + 2):
        attempt, err = _get(url, part, timeout, deadline_at)
        resumed |= attempt.resumed
        why = None if attempt.timed_out else _why(url, part, attempt, err, hint)
        if attempt.timed_out or (why is not None and time.monotonic() >= deadline_at):
            raise DownloadTimeoutError(
                f"{name}: the download from {attempt.url or url} did not finish within its "
                f"deadline of {deadline:.0f} s; {_kept(part)}. For a server this slow set "
                f"datasets.<name>.mirror to a faster mirror or to a local directory holding "
                f"{name}, or raise selfdistill.download.DEADLINE_S.")
        if why is None:
            return attempt.url or url, resumed
        failure, wait = why, backoff * 2 ** (k - 1)
        if k <= retries:
            log.warning("%s: attempt %d of %d failed (%s); retrying in %.0f s", url, k,
                        retries + 1, why.text, wait)
            time.sleep(min(wait, max(0.0, deadline_at - time.monotonic())))
    if failure.truncated:
        raise ArchiveError(f"{name} from {url} is {failure.text} after {retries + 1} "
                           f"attempts; {_kept(part)}. {hint}")
    raise DownloadError(f"cannot fetch {url}: {failure.text} after {retries + 1} attempts; "
                        f"{_kept(part)}. {hint}")


def _copy_file(url: str, part: Path) -> None:
    """A local-directory mirror: copy the file into ``part``."""
    src = Path(urllib.request.url2pathname(urllib.parse.urlparse(url).path))
    try:
        shutil.copyfile(src, part)
    except OSError as err:
        part.unlink(missing_ok=True)
        raise DownloadError(f"cannot fetch {url}: {err}. Set datasets.<name>.mirror to a "
                            f"directory that holds {src.name}.") from err


def fetch(archive: Archive, dest_dir: str | Path, mirror: str | None = None,
          timeout: float | None = None, *, deadline: float | None = None,
          retries: int | None = None, backoff: float | None = None) -> dict[str, Any]:
    """Download ``archive`` into ``dest_dir`` via ``.part``, verify, rename; return its record.

    ``timeout`` bounds each socket read, ``deadline`` the whole download (both in seconds;
    defaults :data:`READ_TIMEOUT_S`, :data:`DEADLINE_S`, :data:`RETRIES`,
    :data:`BACKOFF_S`). A file that fails its hash after a resumed transfer may be two
    versions spliced together, so it is downloaded once more from the start; a file that
    fails it after a whole transfer is not: it is moved aside and :class:`ChecksumError`
    raised. The record names the final URL (after redirects) and, if it differs, the
    requested one.
    """
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    final, part = dest / archive.filename, dest / (archive.filename + ".part")
    url = source_url(archive, mirror)
    log.info("fetching %s from %s", archive.filename, url)
    for clean in (False, True):
        if url.startswith("file:"):
            got, resumed = url, False
            _copy_file(url, part)
        elif url.startswith(("http://", "https://")):
            got, resumed = _download(
                url, part, timeout=READ_TIMEOUT_S if timeout is None else timeout,
                deadline=DEADLINE_S if deadline is None else deadline,
                retries=RETRIES if retries is None else retries,
                backoff=BACKOFF_S if backoff is None else backoff)
        else:
            raise DownloadError(f"cannot fetch {url}: only http(s):// URLs and local "
                                f"directories are supported; fix datasets.<name>.mirror.")
        try:
            record = verify(part, archive, got, final)
            break
        except (ChecksumError, ArchiveError):  # verify moved the file aside to .corrupt
            if clean or not resumed:
                raise
            log.warning("%s failed verification after a resumed download; downloading it "
                        "once more from the start", archive.filename)
    if got != url:
        record["requested_url"] = url
    os.replace(part, final)
    write_json(final.with_name(final.name + ".json"), record)
    log.info("verified %s: sha256 %s", final, record["sha256"])
    return record


def _trusted(path: Path, archive: Archive, url: str) -> dict[str, Any] | None:
    """Record of an existing file that still verifies (or matches its recorded sha256)."""
    if not path.exists():
        return None
    record = verify(path, archive, url)  # raises + moves aside on a pinned mismatch
    sidecar = path.with_name(path.name + ".json")
    recorded = read_json(sidecar) if sidecar.exists() else {}
    if recorded.get("sha256") == record["sha256"]:  # the URLs its download recorded
        record.update({k: recorded[k] for k in ("url", "requested_url") if k in recorded})
    if record["verified_by"]:
        if not sidecar.exists():
            write_json(sidecar, record)
        return record
    seen = recorded.get("sha256")
    if seen is None:  # nothing vouches for it (no pin, no record of its download): refetch
        move_aside(path)
        return None
    if seen != record["sha256"]:
        bad = move_aside(path)
        raise ChecksumError(f"{path.name}: sha256 is {record['sha256']}, expected {seen} (the "
                            f"value its download recorded in {sidecar.name}). Moved aside to "
                            f"{bad}; re-run to download it again, and pin "
                            f"datasets.<name>.sha256 to the archive's published sha256.")
    return record


def ensure_archives(source: str, params: Mapping[str, Any],
                    dest_dir: str | Path) -> list[dict[str, Any]]:
    """Each archive of ``source`` present and verified in ``dest_dir`` (fetched if missing)."""
    if source == "fashion_mnist":
        return _ensure_fashion_mnist(params, Path(dest_dir))
    records = []
    for a in archives_for(source, params):
        url = source_url(a, params.get("mirror"))
        records.append(_trusted(Path(dest_dir) / a.filename, a, url)
                       or fetch(a, dest_dir, params.get("mirror")))
    return records


def download_source(source: str, params: Mapping[str, Any],
                    dest_dir: str | Path) -> list[dict[str, Any]]:
    """The ``download`` rule: fetch and verify every archive ``source`` needs (methods §5)."""
    records = ensure_archives(source, params, dest_dir)
    for r in records:
        log.info("%s ok: sha256 %s, verified by %s", r["file"], r["sha256"],
                 r["verified_by"] or "nothing pinned (recorded)")
    return records


# ------------------------------------------------------------------ torchvision classes


def torchvision_class(source: str, params: Mapping[str, Any]) -> type:
    """torchvision's dataset class for ``source`` with the mirror and checksums applied.

    A subclass (same ``__name__``, so torchvision's folder names are unchanged) whose
    class attributes carry the URL and md5; torchvision itself is not modified. With an
    md5 override the archive is someone else's release, so the per-file md5 lists (of the
    official release) are replaced by existence checks: the archive itself is verified.
    """
    from torchvision import datasets

    if source in ("cifar10", "cifar100"):
        base = datasets.CIFAR10 if source == "cifar10" else datasets.CIFAR100
        (archive,) = archives_for(source, params)
        attrs: dict[str, Any] = {"url": source_url(archive, params.get("mirror")),
                                 "tgz_md5": archive.md5}
        if archive.md5 != base.tgz_md5:
            attrs.update(train_list=[[f, None] for f, _ in base.train_list],
                         test_list=[[f, None] for f, _ in base.test_list],
                         meta={**base.meta, "md5": None})
        return type(base.__name__, (base,), attrs)
    if source == "fashion_mnist":
        base = datasets.FashionMNIST
        mirror = params.get("mirror")
        md5 = params.get("md5") or {}
        return type(base.__name__, (base,), {
            "mirrors": [mirror.rstrip("/") + "/"] if mirror else list(base.mirrors),
            "resources": [(f, md5.get(f, h)) for f, h in base.resources]})
    raise KeyError(f"source {source!r} has no torchvision class")


def _ensure_fashion_mnist(params: Mapping[str, Any], dest: Path) -> list[dict[str, Any]]:
    """Fashion-MNIST's four idx ``.gz`` files: Debian's copies under ``local_dir`` when
    present, else torchvision's ``FashionMNIST`` download (md5-checked) from the mirror;
    either way verified by the sha256 of their decompressed content, then staged in
    ``dest``."""
    archives = archives_for("fashion_mnist", params)
    records, missing = [], []
    for a in archives:
        rec = _trusted(dest / a.filename, a, (dest / a.filename).resolve().as_uri())
        records.append(rec)
        if rec is None:
            missing.append(a)
    local, scratch = Path(params.get("local_dir") or FASHION_MNIST_DIR), None
    if missing and not all((local / a.filename).exists() for a in missing):
        scratch = Path(tempfile.mkdtemp(prefix=".torchvision.", dir=_mkdir(dest)))
        local = _torchvision_fashion_mnist(params, scratch)
    try:
        for a in missing:
            records[archives.index(a)] = _stage(local / a.filename, a, _mkdir(dest))
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    return records


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _stage(src: Path, archive: Archive, dest: Path) -> dict[str, Any]:
    """Copy a local file into ``dest`` via ``.part``, verify, rename (as :func:`fetch`)."""
    part, final = dest / (archive.filename + ".part"), dest / archive.filename
    shutil.copyfile(src, part)
    record = verify(part, archive, src.as_uri(), final)
    os.replace(part, final)
    write_json(final.with_name(final.name + ".json"), record)
    return record


def _torchvision_fashion_mnist(params: Mapping[str, Any], root: Path) -> Path:
    """Download with torchvision (its md5 check) into a scratch root; return its raw dir."""
    cls = torchvision_class("fashion_mnist", params)
    log.info("Fashion-MNIST not under %s; downloading with torchvision from %s",
             params.get("local_dir") or FASHION_MNIST_DIR, cls.mirrors)
    try:
        cls(root=str(root), train=True, download=True)
    except (RuntimeError, OSError) as err:
        raise DownloadError(f"torchvision could not download Fashion-MNIST from {cls.mirrors}: "
                            f"{err}. Install Debian's dataset-fashion-mnist (files under "
                            f"{FASHION_MNIST_DIR}) or set datasets.<name>.mirror.") from err
    return root / cls.__name__ / "raw"

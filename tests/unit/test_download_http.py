"""HTTP behaviour of :func:`selfdistill.download.fetch` against loopback servers.

Each test builds its hostile server in the test: a threaded ``http.server`` on 127.0.0.1
(and a second one on 127.0.0.2 for a redirect to another host) whose path prefix picks
the behaviour: ``ok`` (Range supported), ``norange``, ``cut`` / ``cut1`` (announces the
full length, sends half, always / only the first time), ``fail`` / ``fail1`` (HTTP 500,
always / only the first time), ``drip`` (one byte every 0.2 s) and ``moved`` (302 to
the other server). Every GET is logged with its Range header and the bytes it was sent.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from selfdistill import download as D

NAME = "blob.bin"
DATA = np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8).tobytes()
SHA = hashlib.sha256(DATA).hexdigest()
ARCHIVE = D.Archive(NAME, "unused", SHA, None)


@dataclass
class Get:
    mode: str
    range: str | None
    sent: int = 0


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str) -> None:
        super().__init__((host, 0), _Handler)
        self.files: dict[str, bytes] = {NAME: DATA}
        self.gets: list[Get] = []
        self.redirect = ""  # base URL that ``moved/`` points at
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *args: object) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        mode, _, name = self.path.lstrip("/").partition("/")
        get = Get(mode, self.headers.get("Range"))
        with self.server.lock:
            self.server.gets.append(get)
            nth = sum(g.mode == mode for g in self.server.gets)
        data = self.server.files.get(name)
        if data is None:
            return self.send_error(404)
        if mode == "moved":
            self.send_response(302)
            self.send_header("Location", f"{self.server.redirect}/ok/{name}")
            self.send_header("Content-Length", "0")
            return self.end_headers()
        if mode == "fail" or (mode == "fail1" and nth == 1):
            return self.send_error(500)
        if mode == "drip":
            return self._send(200, data, {}, get, delay=0.2)
        if mode == "cut" or (mode == "cut1" and nth == 1):
            return self._send(200, data, {}, get, stop=len(data) // 2)
        start = int(get.range[6:-1]) if get.range and mode != "norange" else 0
        if start >= len(data) > 0 and get.range:
            return self._send(416, b"", {"Content-Range": f"bytes */{len(data)}"}, get)
        if start:
            return self._send(206, data[start:],
                              {"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"},
                              get)
        return self._send(200, data, {}, get)

    def _send(self, status: int, body: bytes, headers: dict[str, str], get: Get,
              stop: int | None = None, delay: float = 0.0) -> None:
        """Announce ``len(body)`` bytes; send ``body[:stop]`` (all of it by default)."""
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        body = body[:stop]
        try:
            for i in range(0, len(body), 1 if delay else len(body) or 1):
                piece = body[i:i + 1] if delay else body
                self.wfile.write(piece)
                self.wfile.flush()
                get.sent += len(piece)
                time.sleep(delay)
        except OSError:  # the client gave up (the drip test's deadline)
            pass


@dataclass
class Servers:
    a: _Server
    b: _Server  # another host: 127.0.0.2
    threads: list[threading.Thread] = field(default_factory=list)


@pytest.fixture()
def servers() -> Iterator[Servers]:
    a, b = _Server("127.0.0.1"), _Server("127.0.0.2")
    a.redirect = b.url
    s = Servers(a, b)
    for srv in (a, b):
        t = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
        t.start()
        s.threads.append(t)
    yield s
    for srv in (a, b):
        srv.shutdown()
        srv.server_close()


def _fetch(servers: Servers, mode: str, dest: Path, **kw: object) -> dict[str, object]:
    return D.fetch(kw.pop("archive", ARCHIVE), dest, f"{servers.a.url}/{mode}",
                   backoff=kw.pop("backoff", 0.0), **kw)


def _done(dest: Path) -> None:
    """The verified file under its final name, its record, and no partial file."""
    assert hashlib.sha256((dest / NAME).read_bytes()).hexdigest() == SHA
    assert json.loads((dest / (NAME + ".json")).read_text())["sha256"] == SHA
    assert not (dest / (NAME + ".part")).exists()


# ------------------------------------------------------------------ success


def test_plain_success_with_progress_bar_on_a_terminal(servers: Servers, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """One GET, verified, renamed; pooch's tqdm bar on a terminal, none in a rule log."""
    record = _fetch(servers, "ok", tmp_path / "a")
    _done(tmp_path / "a")
    assert record["url"] == f"{servers.a.url}/ok/{NAME}" and "requested_url" not in record
    assert [(g.range, g.sent) for g in servers.a.gets] == [(None, len(DATA))]
    assert "%|" not in capsys.readouterr().err  # not a terminal: no bar
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    _fetch(servers, "ok", tmp_path / "b")
    _done(tmp_path / "b")
    assert "100%|" in capsys.readouterr().err


def test_redirect_to_another_host_records_the_final_url(servers: Servers,
                                                        tmp_path: Path) -> None:
    record = _fetch(servers, "moved", tmp_path)
    _done(tmp_path)
    final = f"{servers.b.url}/ok/{NAME}"
    assert final.startswith("http://127.0.0.2:")
    assert record["url"] == final and record["requested_url"] == f"{servers.a.url}/moved/{NAME}"
    assert json.loads((tmp_path / (NAME + ".json")).read_text())["url"] == final
    # a rerun re-verifies the file in place and keeps the URL its download recorded
    assert D._trusted(tmp_path / NAME, ARCHIVE, record["requested_url"])["url"] == final
    assert [g.mode for g in servers.a.gets] == ["moved"]
    assert [g.mode for g in servers.b.gets] == ["ok"]


# ------------------------------------------------------------------ resume


def test_resume_a_partial_file_with_a_range_request(servers: Servers, tmp_path: Path) -> None:
    """An existing ``.part`` is continued: the server sends only the missing bytes."""
    tmp_path.joinpath(NAME + ".part").write_bytes(DATA[:100_000])
    _fetch(servers, "ok", tmp_path)
    _done(tmp_path)
    assert [(g.range, g.sent) for g in servers.a.gets] == [("bytes=100000-",
                                                           len(DATA) - 100_000)]


def test_server_without_range_support_restarts_cleanly(servers: Servers,
                                                        tmp_path: Path) -> None:
    """A 200 to a Range request is the whole body: the ``.part`` is rewritten, not appended."""
    tmp_path.joinpath(NAME + ".part").write_bytes(b"x" * 100_000)
    _fetch(servers, "norange", tmp_path)
    _done(tmp_path)
    assert [(g.range, g.sent) for g in servers.a.gets] == [("bytes=100000-", len(DATA))]


def test_stale_part_of_another_version_is_downloaded_again_once(servers: Servers,
                                                                tmp_path: Path) -> None:
    """A resumed file that fails its hash may be two versions spliced: one clean retry."""
    tmp_path.joinpath(NAME + ".part").write_bytes(b"x" * 100_000)
    _fetch(servers, "ok", tmp_path)
    _done(tmp_path)
    assert [(g.range, g.sent) for g in servers.a.gets] == [("bytes=100000-", 200_000),
                                                           (None, len(DATA))]


def test_truncated_body_is_resumed(servers: Servers, tmp_path: Path) -> None:
    """Content-Length announces more than the body: retried with a Range request."""
    _fetch(servers, "cut1", tmp_path)
    _done(tmp_path)
    first, second = servers.a.gets
    assert first.range is None and first.sent == len(DATA) // 2
    start = int(second.range[6:-1])
    assert 0 < start <= len(DATA) // 2 and second.sent == len(DATA) - start


def test_always_truncated_body_fails_named_after_the_retries(servers: Servers,
                                                             tmp_path: Path) -> None:
    with pytest.raises(D.ArchiveError, match=rf"{NAME} from .*/cut/{NAME} is truncated: "
                                             rf"received \d+ of {len(DATA)} bytes after 4"):
        _fetch(servers, "cut", tmp_path)
    assert len(servers.a.gets) == D.RETRIES + 1
    assert not (tmp_path / NAME).exists()


# ------------------------------------------------------------------ server errors


def test_http_500_once_is_retried(servers: Servers, tmp_path: Path) -> None:
    _fetch(servers, "fail1", tmp_path)
    _done(tmp_path)
    assert [g.mode for g in servers.a.gets] == ["fail1", "fail1"]


def test_http_500_always_fails_named_after_the_retries(servers: Servers,
                                                       tmp_path: Path) -> None:
    with pytest.raises(D.DownloadError, match=rf"cannot fetch .*/fail/{NAME}: HTTP 500 after "
                                              rf"3 attempts.*mirror"):
        _fetch(servers, "fail", tmp_path, retries=2)
    assert len(servers.a.gets) == 3
    assert not (tmp_path / NAME).exists() and not (tmp_path / (NAME + ".part")).exists()


def test_backoff_between_attempts(servers: Servers, tmp_path: Path) -> None:
    """Waits of backoff * 2**(k-1): 0.1 + 0.2 s before the second and third attempts."""
    t0 = time.monotonic()
    with pytest.raises(D.DownloadError, match="HTTP 500 after 3 attempts"):
        _fetch(servers, "fail", tmp_path, retries=2, backoff=0.1)
    assert time.monotonic() - t0 >= 0.3


def test_wrong_bytes_are_quarantined_and_not_retried_blindly(servers: Servers,
                                                             tmp_path: Path) -> None:
    """A whole download with the wrong hash: one GET, ``.corrupt``, ChecksumError naming the
    file and both hashes. After a resumed one: exactly one clean retry, then the error."""
    wrong = D.Archive(NAME, "unused", "ab" * 32, None)
    with pytest.raises(D.ChecksumError, match=rf"{NAME} .*{SHA}.*{'ab' * 32}"):
        _fetch(servers, "ok", tmp_path, archive=wrong)
    assert len(servers.a.gets) == 1
    assert (tmp_path / (NAME + ".corrupt")).read_bytes() == DATA
    assert not (tmp_path / NAME).exists() and not (tmp_path / (NAME + ".part")).exists()
    tmp_path.joinpath(NAME + ".part").write_bytes(DATA[:1000])
    with pytest.raises(D.ChecksumError, match=NAME):
        _fetch(servers, "ok", tmp_path, archive=wrong)
    assert [g.range for g in servers.a.gets[1:]] == ["bytes=1000-", None]
    assert not (tmp_path / NAME).exists() and not (tmp_path / (NAME + ".part")).exists()


# ------------------------------------------------------------------ deadline


def test_slow_drip_hits_the_overall_deadline(servers: Servers, tmp_path: Path) -> None:
    """One byte every 0.2 s never trips a per-read timeout; the deadline stops it, named."""
    t0 = time.monotonic()
    with pytest.raises(D.DownloadTimeoutError,
                       match=rf"{NAME}: the download from .*/drip/{NAME} did not finish "
                             rf"within its deadline of 1 s.*mirror"):
        _fetch(servers, "drip", tmp_path, deadline=1.0, timeout=30.0)
    assert time.monotonic() - t0 < 1.0 + 3.0
    assert len(servers.a.gets) == 1 and 0 < servers.a.gets[0].sent < 20
    assert not (tmp_path / NAME).exists()  # at most the partial file under .part
    assert [p.name for p in tmp_path.iterdir()] in ([], [NAME + ".part"])

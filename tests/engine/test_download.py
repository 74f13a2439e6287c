"""`rtseg download` against a real HTTP server on 127.0.0.1 that serves a test checkpoint,
honours (or ignores) Range requests, answers 416, and can cut a response short."""
from __future__ import annotations

import filecmp
import re
import shutil
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from rtseg import cli
from rtseg.engine.download import (
    BASE_URL_ENV,
    DownloadError,
    default_checkpoint_path,
    download_checkpoint,
)
from rtseg.engine.models import model_spec
from tests.helpers.engine import write_test_checkpoint

TINY = "/sam2.1_hiera_tiny.pt"
SMALL = "/sam2.1_hiera_small.pt"


@dataclass
class ServerState:
    files: dict[str, Path] = field(default_factory=dict)  # URL path -> file served
    seen: list[tuple[str, str | None, int]] = field(default_factory=list)  # (path, Range header, status)
    cut_after: int | None = None  # body bytes sent before the connection is dropped
    ignore_range: bool = False  # answer 200 with the whole file even to a Range request


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002 - keep pytest output clean
        pass

    def do_GET(self):
        state: ServerState = self.server.state
        range_header = self.headers.get("Range")
        file = state.files.get(self.path)
        if file is None:
            state.seen.append((self.path, range_header, 404))
            self.send_error(404)
            return
        size = file.stat().st_size
        start = 0
        if range_header and not state.ignore_range:
            start = int(re.fullmatch(r"bytes=(\d+)-", range_header).group(1))
            if start >= size:
                state.seen.append((self.path, range_header, 416))
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
            state.seen.append((self.path, range_header, 206))
        else:
            self.send_response(200)
            state.seen.append((self.path, range_header, 200))
        self.send_header("Content-Length", str(size - start))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        to_send = size - start if state.cut_after is None else min(size - start, state.cut_after)
        with open(file, "rb") as f:
            f.seek(start)
            while to_send:
                chunk = f.read(min(to_send, 1 << 20))
                self.wfile.write(chunk)
                to_send -= len(chunk)
        if state.cut_after is not None:
            self.close_connection = True  # the client sees the stream end before Content-Length


class Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address):  # a client hanging up early is expected here
        pass


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """The official-format test checkpoint of sam2.1_hiera_t (~150 MB): written once."""
    return write_test_checkpoint(tmp_path_factory.mktemp("served") / "tiny.pt", image_size=128)


@pytest.fixture(scope="module")
def http_server():
    server = Server(("127.0.0.1", 0), Handler)
    server.state = ServerState()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def server(http_server, checkpoint) -> tuple[str, ServerState]:
    """(base URL, fresh state serving the tiny checkpoint as sam2.1_hiera_tiny.pt)."""
    http_server.state = ServerState(files={TINY: checkpoint})
    host, port = http_server.server_address[:2]
    return f"http://{host}:{port}", http_server.state


@pytest.fixture
def dest(tmp_path):
    d = tmp_path / "checkpoints"
    yield d
    shutil.rmtree(d, ignore_errors=True)  # 150 MB per test: do not keep them around


def test_full_download_lands_verified_and_is_skipped_when_present(server, dest, checkpoint):
    url, state = server
    path = download_checkpoint("tiny", dest, base_url=url)
    assert path == default_checkpoint_path(model_spec("sam2.1_hiera_t"), dest) == dest / "sam2.1_hiera_tiny.pt"
    assert filecmp.cmp(path, checkpoint, shallow=False)
    assert sorted(p.name for p in dest.iterdir()) == ["sam2.1_hiera_tiny.pt"]
    assert state.seen == [(TINY, None, 200)]

    assert download_checkpoint("sam2.1_hiera_t", dest, base_url=url, progress=False) == path
    assert len(state.seen) == 1, "a valid file already present must not be fetched again"


def test_interrupted_download_keeps_only_part_and_rerun_resumes(server, dest, checkpoint):
    url, state = server
    cut = 40 << 20
    state.cut_after = cut
    with pytest.raises(DownloadError, match="rerun to resume") as err:
        download_checkpoint("tiny", dest, base_url=url, progress=False)
    assert f"{url}{TINY}" in str(err.value)
    part = dest / "sam2.1_hiera_tiny.pt.part"
    assert [p.name for p in dest.iterdir()] == [part.name]
    assert part.stat().st_size == cut

    state.cut_after = None
    path = download_checkpoint("tiny", dest, base_url=url, progress=False)
    assert state.seen[-1] == (TINY, f"bytes={cut}-", 206)
    assert filecmp.cmp(path, checkpoint, shallow=False)
    assert not part.exists()


def test_server_without_range_support_restarts_cleanly(server, dest, checkpoint):
    url, state = server
    state.ignore_range = True
    dest.mkdir()
    (dest / "sam2.1_hiera_tiny.pt.part").write_bytes(b"\xff" * 1000)  # would corrupt the file if appended to
    path = download_checkpoint("tiny", dest, base_url=url, progress=False)
    assert state.seen == [(TINY, "bytes=1000-", 200)]
    assert filecmp.cmp(path, checkpoint, shallow=False)


def test_complete_part_is_verified_and_renamed_on_416(server, dest, checkpoint):
    url, state = server
    dest.mkdir()
    shutil.copyfile(checkpoint, dest / "sam2.1_hiera_tiny.pt.part")  # e.g. killed just before the rename
    path = download_checkpoint("tiny", dest, base_url=url, progress=False)
    assert state.seen == [(TINY, f"bytes={checkpoint.stat().st_size}-", 416)]
    assert filecmp.cmp(path, checkpoint, shallow=False)


def test_env_base_url_and_unusable_existing_file_is_replaced(server, dest, checkpoint, monkeypatch):
    url, state = server
    monkeypatch.setenv(BASE_URL_ENV, url + "/")
    dest.mkdir()
    (dest / "sam2.1_hiera_tiny.pt").write_bytes(b"half a file")
    path = download_checkpoint("tiny", dest, progress=False)
    assert state.seen == [(TINY, None, 200)]
    assert filecmp.cmp(path, checkpoint, shallow=False)


def test_garbage_fails_verification_and_is_removed(server, dest, tmp_path):
    url, state = server
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(bytes(range(256)) * 4096)
    state.files[TINY] = garbage
    with pytest.raises(DownloadError, match=r"not a usable sam2\.1 tiny checkpoint and was removed") as err:
        download_checkpoint("tiny", dest, base_url=url, progress=False)
    assert f"{url}{TINY}" in str(err.value)
    assert list(dest.iterdir()) == []


def test_checkpoint_of_another_size_fails_verification(server, dest, checkpoint):
    url, state = server
    state.files[SMALL] = checkpoint  # a mirror serving the tiny weights under the small name
    with pytest.raises(DownloadError, match=r"sam2\.1 tiny checkpoint, not sam2\.1 small \(sam2\.1_hiera_s\)"):
        download_checkpoint("small", dest, base_url=url, progress=False)
    assert list(dest.iterdir()) == []


def test_404_names_the_url(server, dest):
    url, _ = server
    with pytest.raises(DownloadError, match="HTTP 404") as err:
        download_checkpoint("large", dest, base_url=url + "/mirror", progress=False)
    assert f"{url}/mirror/sam2.1_hiera_large.pt" in str(err.value)
    assert not any(dest.iterdir())


def test_unreachable_server_names_the_url(dest):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DownloadError, match="could not reach") as err:
        download_checkpoint("tiny", dest, base_url=f"http://127.0.0.1:{port}", progress=False, timeout_s=5)
    assert f"http://127.0.0.1:{port}/sam2.1_hiera_tiny.pt" in str(err.value)


def test_cli_download(server, dest, checkpoint, capsys):
    url, state = server
    assert cli.main(["download", "sam2.1_hiera_t", "--dir", str(dest), "--base-url", url, "--no-progress"]) == 0
    assert f"sam2.1_hiera_t: {dest / 'sam2.1_hiera_tiny.pt'}" in capsys.readouterr().out
    assert filecmp.cmp(dest / "sam2.1_hiera_tiny.pt", checkpoint, shallow=False)

    assert cli.main(["download", "tiny", "small", "--dir", str(dest), "--base-url", url, "--no-progress"]) == 1
    out, err = capsys.readouterr()
    assert "sam2.1_hiera_t: " in out  # already present: skipped, still reported
    assert f"error: sam2.1_hiera_s: HTTP 404 (Not Found) for {url}{SMALL}" in err
    assert state.seen[-1] == (SMALL, None, 404)

    assert cli.main(["download", "huge", "--dir", str(dest)]) == 2
    assert "unknown model 'huge'" in capsys.readouterr().err

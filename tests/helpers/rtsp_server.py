"""A real RTSP camera on loopback for the capture tests: tools/rtsp_test_server.py (Debian's
GStreamer RTSP server) run by /usr/bin/python3 as a subprocess on a free port."""
from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.helpers.net import free_port

ROOT = Path(__file__).resolve().parents[2]
SERVER = ROOT / "tools" / "rtsp_test_server.py"
SYSTEM_PYTHON = "/usr/bin/python3"


class RtspServer:
    """One test-pattern stream at rtsp://127.0.0.1:PORT/test; stop() and start() again on
    the same port to simulate a camera that drops and comes back."""

    def __init__(self, *, width: int = 320, height: int = 240, fps: int = 15,
                 user: str | None = None, password: str | None = None) -> None:
        self.port = free_port()
        self.args = ["--port", str(self.port), "--width", str(width), "--height", str(height), "--fps", str(fps)]
        if user:
            self.args += ["--user", user, "--password", str(password)]
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, userinfo: str = "", path: str = "/test") -> str:
        return f"rtsp://{userinfo + '@' if userinfo else ''}127.0.0.1:{self.port}{path}"

    def start(self, timeout_s: float = 20.0) -> RtspServer:
        self.proc = subprocess.Popen([SYSTEM_PYTHON, str(SERVER), *self.args],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise RuntimeError(f"RTSP test server exited with {self.proc.returncode}: {err}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"RTSP test server did not listen on port {self.port} within {timeout_s} s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc is not None and self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None


@pytest.fixture
def rtsp_server() -> Iterator[RtspServer]:
    server = RtspServer().start()
    yield server
    server.stop()


@pytest.fixture
def rtsp_server_with_auth() -> Iterator[RtspServer]:
    server = RtspServer(user="operator", password="Sup3r-Secret!").start()
    yield server
    server.stop()

"""`rtseg foxglove` and `rtseg stream` as real processes: they serve, stop on SIGTERM with exit
0, and refuse what cannot work with exit 2 and a message that says what to do."""
from __future__ import annotations

import signal
import time
import urllib.request

from tests.helpers.foxglove_client import FoxgloveClient
from tests.helpers.net import free_port
from tests.helpers.procs import start_cli, stop_process, wait_for
from tests.helpers.recording import PublishingThread


def test_foxglove_command_serves_until_sigterm(tmp_path):
    pub = PublishingThread(rate_hz=20, frames=True)
    pub.start()
    assert pub.ready.wait(10)
    port = free_port()
    log = tmp_path / "fox.log"
    proc = start_cli("foxglove", "--pub", pub.endpoint, "--camera", "cam", "--port", str(port), log=log)
    try:
        wait_for(lambda: "serving Foxglove on" in log.read_text(), 30, "the server")
        with FoxgloveClient(f"ws://127.0.0.1:{port}") as client:
            got = client.collect({"/cam/masks": 2}, timeout=10)
        assert len(got["/cam/masks"]) == 2
        assert stop_process(proc, signal.SIGTERM) == 0
    finally:
        stop_process(proc)
        pub.stop()


def test_stream_command_serves_and_refuses_an_open_bind_without_token(tmp_path):
    refused = start_cli("stream", "--camera", "cam", "--host", "0.0.0.0", "--port", "0", log=tmp_path / "open.log")
    assert refused.wait(30) == 2
    assert "give a token" in (tmp_path / "open.log").read_text()
    pub = PublishingThread(rate_hz=20, frames=True)
    pub.start()
    assert pub.ready.wait(10)
    port = free_port()
    log = tmp_path / "stream.log"
    proc = start_cli("stream", "--pub", pub.endpoint, "--camera", "cam", "--port", str(port), log=log)
    try:
        wait_for(lambda: "streaming on" in log.read_text(), 30, "the server")
        deadline = time.monotonic() + 10
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/cam.jpg", timeout=5) as r:
                    assert r.headers["Content-Type"] == "image/jpeg" and r.read(2) == b"\xff\xd8"
                    break
            except OSError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
        assert stop_process(proc, signal.SIGTERM) == 0
    finally:
        stop_process(proc)
        pub.stop()

"""The MJPEG overlay stream with real HTTP clients on loopback: multipart parsing, mask
colours where the masks are, snapshots, tokens, a stalled client, the index page in Chromium."""
from __future__ import annotations

import http.client
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from rtseg.bridges.mjpeg import MjpegServer
from rtseg.pipeline.publisher import Publisher
from rtseg.protocol import FrameMessage
from rtseg.view.overlay import DEFAULT_ALPHA, object_color
from tests.helpers.recording import masks_message
from tests.helpers.scene import SceneThread

H, W = 96, 128  # the `publishing` fixture's frame size (conftest.py)
DOCS = Path(__file__).resolve().parents[2] / "docs"


def read_part(resp: http.client.HTTPResponse) -> tuple[dict[str, str], bytes]:
    """One part of a multipart/x-mixed-replace body: (headers, JPEG bytes)."""
    line = resp.fp.readline()
    while line in (b"\r\n", b"\n"):
        line = resp.fp.readline()
    assert line.strip() == b"--rtsegframe", line
    headers = {}
    while (line := resp.fp.readline().strip()):
        key, _, value = line.decode().partition(":")
        headers[key.strip().lower()] = value.strip()
    return headers, resp.fp.read(int(headers["content-length"]))


def decode(jpeg: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)[..., ::-1].astype(int)


def blend(base: tuple[int, int, int], color: tuple[int, int, int]) -> np.ndarray:
    a = round(DEFAULT_ALPHA * 256) / 256
    return np.asarray(base) * (1 - a) + np.asarray(color) * a


def get(port: int, path: str, headers: dict | None = None) -> tuple[int, str, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", path, headers=headers or {})
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, resp.getheader("Content-Type"), body


def test_stream_shows_each_mask_in_its_colour_on_its_frame(publishing):
    with MjpegServer(publishing.endpoint, ["cam"], port=0, fps=20) as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        conn.request("GET", "/cam.mjpg")
        resp = conn.getresponse()
        assert resp.status == 200
        assert resp.getheader("Content-Type") == "multipart/x-mixed-replace; boundary=rtsegframe"
        checked = unmasked = 0
        deadline = time.monotonic() + 15
        while checked < 5 and time.monotonic() < deadline:
            headers, jpeg = read_part(resp)
            index, masks_index = int(headers["x-frame-index"]), int(headers["x-masks-index"])
            rgb = decode(jpeg)
            assert rgb.shape == (H, W, 3)
            base = (40, 40, (index * 7) % 256)  # tests.helpers.recording.frame_message
            assert np.abs(rgb[80, 100] - base).max() < 12  # no mask there: the frame itself
            if masks_index == -1:  # the frame alone, before its subscription got the first masks
                assert checked == 0, f"frame {index} without masks after masked ones"
                assert np.abs(rgb[30, 36] - base).max() < 12
                unmasked += 1
                continue
            assert masks_index == index  # masks on the frame they were computed from
            # object 7 covers rows 25:40, columns 30:50 (object 1, at the top, is under its own label)
            for y, x in ((30, 36), (35, 44)):
                assert np.abs(rgb[y, x] - blend(base, object_color(7))).max() < 16, (index, rgb[y, x])
            checked += 1
        assert unmasked <= 3, f"{unmasked} pictures without masks: masks are published with every frame"
        conn.close()
        assert checked == 5
        status, ctype, body = get(server.port, "/cam.jpg")
        assert (status, ctype) == (200, "image/jpeg") and decode(body).shape == (H, W, 3)
        status, ctype, body = get(server.port, "/")
        assert status == 200 and ctype.startswith("text/html") and b'src="/cam.mjpg"' in body
        assert get(server.port, "/other.mjpg")[0] == 404


def test_token_is_required_when_one_is_set_and_off_loopback():
    with pytest.raises(ValueError, match="token"):
        MjpegServer("tcp://127.0.0.1:1", ["cam"], host="0.0.0.0", port=0)
    with MjpegServer("tcp://127.0.0.1:1", ["cam"], port=0, token="s3cret") as server:
        assert get(server.port, "/")[0] == 401
        assert get(server.port, "/?token=wrong")[0] == 401
        status, _, body = get(server.port, "/?token=s3cret")
        assert status == 200 and b"/cam.mjpg?token=s3cret" in body  # links carry the token on
        assert get(server.port, "/", {"Authorization": "Bearer s3cret"})[0] == 200
        assert get(server.port, "/", {"X-Rtseg-Token": "s3cret"})[0] == 200
        assert get(server.port, "/cam.jpg?token=s3cret")[0] == 503  # no picture yet: nothing publishes
        assert server.stats()["refused"] == 2


def _publish_noise(endpoint_box: list, stop: threading.Event) -> None:
    """Big incompressible frames (so a stalled client's socket fills) with their masks."""
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (240, 320, 3), np.uint8)
    with Publisher("tcp://127.0.0.1:*", hwm=1000) as pub:
        endpoint_box.append(pub.endpoint)
        i = 0
        while not stop.is_set():
            wall = time.time_ns()
            pub.publish(masks_message(i, h=240, w=320, wall_ns=wall))
            pub.publish(FrameMessage.from_image("cam", i, np.roll(noise, i, axis=1), capture_ns=time.monotonic_ns(),
                                                capture_wall_ns=wall, quality=95))
            i += 1
            time.sleep(0.05)


def test_a_stalled_client_misses_pictures_and_slows_nobody_else():
    stop, box = threading.Event(), []
    publisher = threading.Thread(target=_publish_noise, args=(box, stop), daemon=True)
    publisher.start()
    try:
        while not box:
            time.sleep(0.01)
        with MjpegServer(box[0], ["cam"], port=0, fps=15, quality=95) as server:
            slow = socket.socket()
            slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            slow.connect(("127.0.0.1", server.port))
            slow.sendall(b"GET /cam.mjpg HTTP/1.0\r\n\r\n")  # ... and reads nothing for a while
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
            conn.request("GET", "/cam.mjpg")
            resp = conn.getresponse()
            read_part(resp)
            t0, got, indices = time.monotonic(), 0, []
            while time.monotonic() - t0 < 4:
                headers, _ = read_part(resp)
                indices.append(int(headers["x-frame-index"]))
                got += 1
            conn.close()
            slow.settimeout(0.2)
            t1, late = time.monotonic(), 0
            while time.monotonic() - t1 < 2:  # the stalled client reads again: it gets the newest picture
                try:
                    late += len(slow.recv(1 << 16))
                except TimeoutError:
                    pass
            stats = server.stats()
            slow.close()
    finally:
        stop.set()
        publisher.join(5)
    assert got >= 15, f"the reading client got only {got} pictures in 4 s next to a stalled one"
    assert indices == sorted(indices)
    assert late > 0 and stats["dropped"] > 10, stats  # the stalled client's misses (the reader took each one)


def test_index_page_in_headless_chromium(tmp_path):
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    assert os.path.exists(chromium), "Chromium is needed for this test (apt-get install chromium)"
    scene = SceneThread("demo", 320, 240)
    scene.start()
    try:
        assert scene.ready.wait(10)
        with MjpegServer(scene.endpoint, ["demo"], port=0, fps=10) as server:
            status, _, snapshot = get(server.port, "/demo.jpg")
            assert status == 200  # pictures are flowing
            shot = tmp_path / "index.png"
            with tempfile.TemporaryDirectory() as profile:
                run = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                                      "--disable-background-networking", "--disable-component-update",
                                      "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
                                      "--hide-scrollbars", "--window-size=420,400", "--virtual-time-budget=3000",
                                      f"--screenshot={shot}", f"http://127.0.0.1:{server.port}/"],
                                     capture_output=True, timeout=90)
            assert shot.exists(), run.stderr.decode()[-2000:]
    finally:
        scene.stop()
    page = cv2.imread(str(shot))[..., ::-1].astype(int)
    # each object's outline colour shows on the page: the live picture with masks was rendered
    for obj in (1, 2, 3):
        hits = (np.abs(page - object_color(obj)).max(axis=2) < 24).sum()
        assert hits > 30, f"object {obj}'s colour is not on the page ({hits} pixels)"
    if os.environ.get("RTSEG_WRITE_DOCS"):
        shutil.copy(shot, DOCS / "stream.png")

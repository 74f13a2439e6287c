"""Live sources: RTSP against a real GStreamer server on loopback, webcams, credential redaction."""
from __future__ import annotations

import logging
import string
import time

import cv2
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rtseg.sources import NetworkSource, SourceError, SourceLost, WebcamSource, open_source, redact_url, scrub
from tests.helpers.rtsp_server import RtspServer, rtsp_server, rtsp_server_with_auth  # noqa: F401
from tests.helpers.net import free_port

PASSWORD = "Sup3r-Secret!"

# -- credentials ---------------------------------------------------------------------------

def test_redact_url_hides_userinfo_and_secret_query_values() -> None:
    assert redact_url("rtsp://admin:hunter2@10.0.0.5:554/Streaming/101") == "rtsp://***@10.0.0.5:554/Streaming/101"
    assert redact_url("rtsp://admin:p@ss@cam/x") == "rtsp://***@cam/x"
    assert redact_url("http://cam/video?user=a&password=b&res=hd") == "http://cam/video?user=***&password=***&res=hd"
    assert redact_url("synthetic://640x480@30?seed=1") == "synthetic://640x480@30?seed=1"
    assert redact_url("/videos/a@b.mp4") == "/videos/a@b.mp4"
    text = "ffmpeg: 401 for rtsp://admin:hunter2@cam/x (password hunter2)"
    assert scrub(text, "rtsp://admin:hunter2@cam/x") == "ffmpeg: 401 for rtsp://***@cam/x (password ***)"


_userinfo_chars = string.ascii_letters + string.digits + "-._~!$&'()*+,;=%"


@given(user=st.text(_userinfo_chars, min_size=1, max_size=12),
       password=st.text(_userinfo_chars + ":@", min_size=4, max_size=24),
       host=st.sampled_from(["cam.local", "10.1.2.3:8554", "[::1]:554"]))
def test_no_password_survives_redaction(user: str, password: str, host: str) -> None:
    url = f"rtsp://{user}:{password}@{host}/stream"
    assert password not in redact_url(url).replace(host, "").replace("/stream", "")
    assert password not in scrub(f"cannot open {url}; password was {password}", url).replace(host, "")


# -- RTSP against a real server ------------------------------------------------------------

def test_rtsp_frames_arrive_in_rgb_with_their_size(rtsp_server: RtspServer) -> None:  # noqa: F811
    with open_source(rtsp_server.url(), source_id="door") as src:
        assert isinstance(src, NetworkSource) and src.live
        assert (src.width, src.height) == (320, 240) and src.fps == pytest.approx(15)
        frames = [src.read() for _ in range(20)]
    assert [f.index for f in frames] == list(range(20))
    assert all(f.image.shape == (240, 320, 3) and f.source_id == "door" for f in frames)
    assert all(a.t_mono_ns <= b.t_mono_ns for a, b in zip(frames, frames[1:], strict=False))
    # videotestsrc's ball pattern moves: the stream is live, not a frozen picture
    assert not np.array_equal(frames[0].image, frames[-1].image)


def test_rtsp_with_credentials_and_wrong_path(rtsp_server_with_auth: RtspServer, caplog: pytest.LogCaptureFixture) -> None:  # noqa: F811
    caplog.set_level(logging.DEBUG)
    server = rtsp_server_with_auth
    with open_source(server.url(f"operator:{PASSWORD}"), width=160) as src:
        assert src.read().image.shape == (120, 160, 3)
        assert PASSWORD not in repr(src) and "***@" in src.url
    with pytest.raises(SourceError, match="rejected the credentials") as wrong:
        open_source(server.url("operator:not-the-password"))
    with pytest.raises(SourceError, match=r"needs credentials .*rtsp://USER:PASSWORD@HOST/PATH"):
        open_source(server.url())
    with pytest.raises(SourceError, match=r"no stream at path '/nope' \(404"):
        open_source(server.url(f"operator:{PASSWORD}", path="/nope"))
    assert "not-the-password" not in str(wrong.value) and wrong.value.live
    assert PASSWORD not in caplog.text and "not-the-password" not in caplog.text


def test_rtsp_nothing_listening_fails_fast_and_clearly() -> None:
    url = f"rtsp://admin:{PASSWORD}@127.0.0.1:{free_port()}/cam"
    t0 = time.monotonic()
    with pytest.raises(SourceError, match=r"cannot open camera rtsp://\*\*\*@127\.0\.0\.1:\d+/cam: nothing is listening") as err:
        open_source(url, open_timeout_s=2)
    assert time.monotonic() - t0 < 5
    assert err.value.live and PASSWORD not in str(err.value)
    with pytest.raises(SourceError, match="cannot resolve host 'no-such-camera.invalid'"):
        open_source("rtsp://no-such-camera.invalid/stream", open_timeout_s=2)


def test_rtsp_stream_that_stops_raises_source_lost(rtsp_server: RtspServer) -> None:  # noqa: F811
    src = open_source(rtsp_server.url(), read_timeout_s=2)
    src.read()
    rtsp_server.stop()
    t0 = time.monotonic()
    with pytest.raises(SourceLost, match=r"camera rtsp://127\.0\.0\.1:\d+/test stopped after \d+ frames"):
        for _ in range(200):  # frames already buffered may still come out first
            src.read()
    assert time.monotonic() - t0 < 6
    src.close()


# -- webcams -------------------------------------------------------------------------------

def test_missing_webcam_gives_a_clear_error() -> None:
    with pytest.raises(SourceError, match=r"no camera at /dev/video77: the device does not exist; list the cameras"):
        open_source("/dev/video77")
    with pytest.raises(SourceError, match=r"cannot open camera /dev/video77: .*v4l2-ctl --list-devices") as err:
        open_source("77")  # a real V4L2 open of a device this machine does not have
    assert err.value.live


class _FakeCamera:
    """Stands in for cv2.VideoCapture where no webcam can exist: supports 640x480 only,
    delivers frames until `frames` is used up, then fails like an unplugged camera."""

    frames = 3

    def __init__(self, device: object, api: int) -> None:
        self.device, self.api = device, api
        self.props = {cv2.CAP_PROP_FRAME_WIDTH: 640.0, cv2.CAP_PROP_FRAME_HEIGHT: 480.0, cv2.CAP_PROP_FPS: 30.0}
        self.asked: dict[int, float] = {}

    def isOpened(self) -> bool:  # noqa: N802 - OpenCV's name
        return True

    def set(self, prop: int, value: float) -> bool:
        self.asked[prop] = value
        return prop == cv2.CAP_PROP_FPS

    def get(self, prop: int) -> float:
        return self.props.get(prop, 0.0)

    def read(self) -> tuple[bool, np.ndarray | None]:
        if self.frames == 0:
            return False, None
        self.frames -= 1
        bgr = np.zeros((480, 640, 3), np.uint8)
        bgr[..., 0] = 255  # blue in BGR
        return True, bgr

    def release(self) -> None:
        pass


def test_webcam_asks_for_the_size_and_reports_what_it_got(monkeypatch: pytest.MonkeyPatch,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(cv2, "VideoCapture", _FakeCamera)
    caplog.set_level(logging.INFO)
    with open_source("0", width=1280, height=720, fps=30) as cam:
        assert isinstance(cam, WebcamSource)
        assert cam._cap.device == 0 and cam._cap.asked[cv2.CAP_PROP_FRAME_WIDTH] == 1280  # type: ignore[union-attr]
        assert (cam.width, cam.height, cam.fps) == (640, 480, 30.0)
        assert "delivers 640x480 @ 30 fps (asked for 1280x720 @ 30)" in caplog.text
        frame = cam.read()
        assert frame.image.shape == (480, 640, 3) and tuple(frame.image[0, 0]) == (0, 0, 255)  # RGB blue
        cam.read()
        cam.read()
        with pytest.raises(SourceLost, match="stopped delivering frames after 3"):
            cam.read()

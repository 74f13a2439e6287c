"""Network cameras (`rtsp://`, `rtsps://`, `http(s)://`) through OpenCV's FFmpeg backend.

RTSP goes over TCP unless the user set OPENCV_FFMPEG_CAPTURE_OPTIONS themselves. Opening
and every read are bounded by timeouts, so a dead camera is an error in seconds, never a
hang. When opening fails, a short probe of the server turns OpenCV's bare "not opened"
into a reason: nothing listening, no answer, unknown host, wrong path, credentials.
"""
from __future__ import annotations

import logging
import os
import socket
import time
from urllib.parse import urlsplit

import cv2

from rtseg.sources.base import Frame, SourceError, SourceLost, VideoCaptureSource, bgr_to_rgb, target_size
from rtseg.sources.redact import redact_url

log = logging.getLogger(__name__)

FFMPEG_OPTIONS_ENV = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
DEFAULT_PORTS = {"rtsp": 554, "rtsps": 322, "http": 80, "https": 443}


def use_rtsp_over_tcp() -> None:
    """Ask OpenCV's FFmpeg for RTSP over TCP, unless the user chose their own options."""
    os.environ.setdefault(FFMPEG_OPTIONS_ENV, "rtsp_transport;tcp")


def answers(url: str, timeout_s: float = 1.0) -> bool:
    """Whether the network camera at `url` accepts a TCP connection (cheap: nothing is asked
    of it, nothing decoded). The capture process probes a lost camera with it between
    reconnect attempts."""
    parts = urlsplit(url)
    try:
        port = parts.port or DEFAULT_PORTS.get(parts.scheme.lower(), 554)
        with socket.create_connection((parts.hostname or "", port), timeout=timeout_s):
            return True
    except (OSError, ValueError):
        return False


def probe_failure(url: str, timeout_s: float) -> str:
    """Why a network source probably failed to open, in words a user can act on."""
    parts = urlsplit(url)
    host, scheme = parts.hostname or "", parts.scheme.lower()
    try:
        port = parts.port or DEFAULT_PORTS.get(scheme, 554)
    except ValueError:
        return f"the port in the URL is not a number; write it as {scheme}://HOST:PORT/PATH"
    if not host:
        return f"the URL has no host; write it as {scheme}://HOST:PORT/PATH"
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            if scheme != "rtsp":
                return (f"{host}:{port} accepts connections but no video stream could be opened there; "
                        "check the path and that it serves a video stream")
            sock.settimeout(timeout_s)
            target = parts._replace(netloc=f"{host}:{port}").geturl()
            sock.sendall(f"DESCRIBE {target} RTSP/1.0\r\nCSeq: 1\r\nAccept: application/sdp\r\n\r\n".encode())
            status = sock.recv(512).split(b"\r\n", 1)[0].decode("latin-1", "replace")
    except socket.gaierror:
        return f"cannot resolve host {host!r}; check its spelling or use the camera's IP address"
    except ConnectionRefusedError:
        return f"nothing is listening on {host}:{port} (connection refused); check the address, port and that the camera is on"
    except (TimeoutError, socket.timeout):
        return f"no answer from {host}:{port} within {timeout_s:g} s; check the address, the network and any firewall"
    except OSError as e:
        return f"cannot reach {host}:{port} ({e.strerror or e}); check the address and the network"
    code = status.split(" ")[1] if status.count(" ") >= 1 else ""
    if code == "401":
        if parts.username or parts.password:
            return "the camera rejected the credentials (401 Unauthorized); check the user name and password"
        return "the camera needs credentials (401 Unauthorized); put them in the URL as rtsp://USER:PASSWORD@HOST/PATH"
    if code == "404":
        return f"the camera has no stream at path {parts.path or '/'!r} (404 Not Found); check the path in its manual"
    if code == "200":
        return ("the camera answered but its video could not be decoded (codec or transport); "
                f"try another stream path, or set {FFMPEG_OPTIONS_ENV}='rtsp_transport;udp'")
    return f"the server answered {status!r} instead of a video stream; check the URL"


class NetworkSource(VideoCaptureSource):
    """An RTSP/HTTP camera. read() raises SourceLost when the stream stops; `fps` is the
    rate the stream reports (0.0 if it does not say)."""

    live = True

    def __init__(
        self,
        url: str,
        source_id: str = "network",
        width: int | None = None,
        height: int | None = None,
        open_timeout_s: float = 5.0,
        read_timeout_s: float = 5.0,
    ) -> None:
        super().__init__(source_id, redact_url(url))
        use_rtsp_over_tcp()
        self.read_timeout_s = read_timeout_s
        params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(open_timeout_s * 1000),
            cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(read_timeout_s * 1000),
        ]
        t0 = time.monotonic()
        self._cap = cv2.VideoCapture(url, cv2.CAP_FFMPEG, params)
        first = self._read_first()
        if first is None:
            reason = probe_failure(url, min(open_timeout_s, 3.0))
            raise SourceError(f"cannot open camera {self.url}: {reason}", live=True)
        self._size = target_size(first.shape[1], first.shape[0], width, height)
        reported = self._cap.get(cv2.CAP_PROP_FPS)
        self._fps = reported if 0 < reported < 1000 else 0.0
        log.info("opened %s in %.1f s: %dx%d @ %.3g fps", self.url, time.monotonic() - t0,
                 first.shape[1], first.shape[0], self._fps)

    def read(self) -> Frame | None:
        if self._cap is None:
            raise SourceLost(f"camera {self.url} is closed")
        t0 = time.monotonic()
        bgr = self._next_bgr()
        if bgr is None:
            waited = time.monotonic() - t0
            why = f"no frame for {waited:.1f} s" if waited >= self.read_timeout_s * 0.9 else "the stream closed"
            raise SourceLost(f"camera {self.url} stopped after {self._index} frames ({why})")
        return self._stamp(bgr_to_rgb(bgr, self._size))

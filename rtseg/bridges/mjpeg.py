"""An overlay stream any player opens: each camera with its masks drawn, as MJPEG over HTTP.

  GET /                  a small page listing the cameras (live pictures and links)
  GET /<camera>.mjpg     multipart/x-mixed-replace JPEG stream (browsers, VLC, ffmpeg, most NVRs);
                         each part carries X-Frame-Index (the capture frame index), X-Masks-Index
                         (the capture index of the frame the drawn masks were computed from, -1
                         when the picture carries none: before the first masks, or while the
                         segmenter is down) and X-Timestamp (capture wall clock, ns)
  GET /<camera>.jpg      the newest picture (a snapshot)

Pictures come from `rtseg.view.feed.Feed`, the viewer's data side: frames from the camera's
ring (same host) or the JPEG topic, each drawn with the masks computed from that very frame.
A camera's encoder makes at most `fps` JPEGs a second, only while someone watches. Every
client is served by its own thread and always gets the newest JPEG when it is ready for one:
a slow client misses pictures (counted in `stats()["dropped"]`) and slows nobody else — not
the other clients, and never the segmenter (the bridge's subscription drops at its
high-water mark). A client that takes nothing for `SEND_TIMEOUT_S` is disconnected.

Bound to a loopback address by default. Bound to any other address it requires a token:
`?token=...`, `Authorization: Bearer ...` or `X-Rtseg-Token: ...`.
"""
from __future__ import annotations

import hmac
import html
import ipaddress
import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import cv2
import numpy as np

from rtseg.view.feed import Feed
from rtseg.view.overlay import OverlayStyle

log = logging.getLogger("rtseg.bridges.mjpeg")

DEFAULT_PORT = 8080
BOUNDARY = "rtsegframe"
SEND_TIMEOUT_S = 20.0
SEND_BUFFER_BYTES = 512 * 1024
SNAPSHOT_WAIT_S = 3.0
WATCH_LINGER_S = 5.0  # keep encoding this long after the last snapshot request


# (number, JPEG bytes, frame index, masks index or None when no masks are drawn, capture wall ns)
Picture = tuple[int, bytes, "int | None", "int | None", "int | None"]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class CameraStream:
    """One camera's Feed and the newest JPEG of it (`wait_newer` hands it to clients)."""

    def __init__(self, camera: str, feed: Feed, fps: float, quality: int) -> None:
        self.camera = camera
        self.feed = feed
        self.period = 1.0 / fps
        self.quality = quality
        self._cond = threading.Condition()
        self._jpeg: Picture | None = None
        self._number = 0
        self._watchers = 0
        self._wanted_until = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._encode_loop, name=f"mjpeg-{camera}", daemon=True)

    def start(self) -> None:
        self.feed.start()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        self._thread.join(2.0)
        self.feed.stop()

    def watch(self, delta: int) -> None:
        with self._cond:
            self._watchers += delta

    def want_snapshot(self) -> None:
        with self._cond:
            self._wanted_until = time.monotonic() + WATCH_LINGER_S

    def wait_newer(self, than: int, timeout: float) -> Picture | None:
        """The newest JPEG if it is newer than number `than`, waiting up to `timeout` for one."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._stop.is_set() and (self._jpeg is None or self._jpeg[0] <= than):
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)
            return self._jpeg if self._jpeg is not None and self._jpeg[0] > than else None

    def _encode_loop(self) -> None:
        shown = -1
        next_due = time.monotonic()
        while not self._stop.is_set():
            self._stop.wait(max(0.0, next_due - time.monotonic()))
            next_due = max(next_due + self.period, time.monotonic())
            with self._cond:
                watched = self._watchers > 0 or time.monotonic() < self._wanted_until
            view = self.feed.latest_view()
            if not watched or view is None or view.serial == shown:
                continue
            shown = view.serial
            ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(view.image[..., ::-1]),
                                   [cv2.IMWRITE_JPEG_QUALITY, self.quality])
            if not ok:
                continue
            with self._cond:
                self._number += 1
                self._jpeg = (self._number, buf.tobytes(), view.frame_index, view.masks_index,
                              view.capture_wall_ns)
                self._cond.notify_all()


class MjpegServer:
    """Serve `cameras` of the segmenter at `pub` on http://host:port/ (port 0: any free port,
    see `.port`). `rings`: camera -> same-host ring for frames; otherwise the JPEG topic."""

    def __init__(self, pub: str, cameras: list[str], *, rings: dict[str, str] | None = None,
                 host: str = "127.0.0.1", port: int = DEFAULT_PORT, fps: float = 10.0, quality: int = 80,
                 token: str | None = None, alpha: float = 0.45, curve: Any = None, context: Any = None) -> None:
        if not cameras:
            raise ValueError("no camera to stream: give --camera ID (or a config with cameras)")
        if fps <= 0 or not 1 <= quality <= 100:
            raise ValueError(f"fps must be positive and quality 1-100, got fps {fps}, quality {quality}")
        if not token and not is_loopback(host):
            raise ValueError(f"binding the stream to {host} makes it reachable from other machines: give a token "
                             "(--token or RTSEG_STREAM_TOKEN), or bind to 127.0.0.1")
        self.token = token or None
        self.cameras = list(cameras)
        rings = rings or {}
        self.streams = {c: CameraStream(c, Feed(c, pub, ring=rings.get(c), style=OverlayStyle(alpha=alpha),
                                                curve=curve, context=context), fps, quality)
                        for c in self.cameras}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._counts = {"clients": 0, "sent": 0, "dropped": 0, "refused": 0}
        self.httpd = _HttpServer((host, port), _Handler, self)

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def start(self) -> MjpegServer:
        for s in self.streams.values():
            s.start()
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2}, name="mjpeg-http",
                         daemon=True).start()
        host = self.httpd.server_address[0]
        log.info("MJPEG stream on http://%s:%d/ (%s)%s", host, self.port, ", ".join(f"/{c}.mjpg" for c in self.cameras),
                 " — token required" if self.token else "")
        return self

    def stop(self) -> None:
        self._stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        for s in self.streams.values():
            s.stop()

    def __enter__(self) -> MjpegServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stats(self) -> dict[str, int]:
        """clients (connected to a stream now), sent (pictures), dropped (pictures a client was
        too slow to take), refused (requests without the token)."""
        with self._lock:
            return dict(self._counts)

    def count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._counts[key] += n

    def authorized(self, query: dict[str, list[str]], headers: Any) -> bool:
        if self.token is None:
            return True
        offered = (query.get("token") or [""])[0] or headers.get("X-Rtseg-Token", "")
        auth = headers.get("Authorization", "")
        if not offered and auth.startswith("Bearer "):
            offered = auth[len("Bearer "):]
        return hmac.compare_digest(offered.encode(), self.token.encode())

    def index_html(self, token_query: str) -> bytes:
        items = []
        for c in self.cameras:
            name = html.escape(c)
            link = quote(c)
            items.append(f'<figure><figcaption>{name} — <a href="/{link}.mjpg{token_query}">{name}.mjpg</a> · '
                         f'<a href="/{link}.jpg{token_query}">snapshot</a></figcaption>'
                         f'<img src="/{link}.mjpg{token_query}" alt="{name} with masks"></figure>')
        return ("<!doctype html><html><head><meta charset='utf-8'><title>rtseg stream</title><style>"
                "body{font-family:sans-serif;background:#111;color:#eee;margin:1em}a{color:#8cf}"
                "figure{display:inline-block;margin:0 1em 1em 0}img{max-width:640px;display:block;"
                "border:1px solid #444}</style></head><body><h1>rtseg cameras</h1>"
                + "".join(items) + "<p>Open a .mjpg link in VLC, a browser or an NVR.</p></body></html>").encode()


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: Any, app: MjpegServer) -> None:
        self.app = app
        super().__init__(address, handler)


class _Handler(BaseHTTPRequestHandler):
    server: _HttpServer
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def _reply(self, code: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        app = self.server.app
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        if not app.authorized(query, self.headers):
            app.count("refused")
            self._reply(401, b"a token is required: ?token=..., or the header Authorization: Bearer ...\n")
            return
        path = url.path
        if path in ("/", "/index.html"):
            token_query = f"?token={quote(query['token'][0])}" if "token" in query else ""
            self._reply(200, app.index_html(token_query), "text/html; charset=utf-8")
            return
        name, _, ext = path.lstrip("/").rpartition(".")
        stream = app.streams.get(name)
        if stream is None or ext not in ("mjpg", "jpg"):
            known = ", ".join(f"/{c}.mjpg" for c in app.cameras)
            self._reply(404, f"no such stream {path!r}; streams: {known}\n".encode())
        elif ext == "jpg":
            self._snapshot(stream)
        else:
            self._stream(stream)

    def _snapshot(self, stream: CameraStream) -> None:
        stream.want_snapshot()
        got = stream.wait_newer(0, SNAPSHOT_WAIT_S)
        if got is None:
            self._reply(503, f"no picture of {stream.camera!r} yet: is the camera running?\n".encode())
            return
        self._reply(200, got[1], "image/jpeg")

    def _stream(self, stream: CameraStream) -> None:
        app = self.server.app
        self.connection.settimeout(SEND_TIMEOUT_S)  # a client that takes nothing this long is dropped
        # a small send buffer: a slow client gets a fresh picture, not seconds of buffered ones
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
        self.send_response(200)
        self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        stream.watch(+1)
        app.count("clients")
        last = 0
        try:
            while not app._stop.is_set():
                got = stream.wait_newer(last, 1.0)
                if got is None:
                    continue
                number, jpeg, index, masks_index, wall_ns = got
                if last:
                    app.count("dropped", number - last - 1)
                last = number
                head = (f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n"
                        f"X-Frame-Index: {-1 if index is None else index}\r\n"
                        f"X-Masks-Index: {-1 if masks_index is None else masks_index}\r\n"
                        f"X-Timestamp: {-1 if wall_ns is None else wall_ns}\r\n\r\n")
                self.wfile.write(head.encode() + jpeg + b"\r\n")
                self.wfile.flush()
                app.count("sent")
        except (OSError, ValueError):  # the client went away or stopped reading
            pass
        finally:
            stream.watch(-1)
            app.count("clients", -1)

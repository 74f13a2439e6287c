"""Frame sources behind one small interface, chosen by a URL-like string.

    0, 1, /dev/video0                     webcam (OpenCV V4L2)
    rtsp://[user:pass@]host[:port]/path   network camera (OpenCV FFmpeg, RTSP over TCP)
    rtsps://, http://, https://, rtmp://  other network streams (OpenCV FFmpeg)
    video.mp4, clip.mkv, /data/frames/    video file or folder of images, paced to its fps
    video.mp4?realtime=false              the same, every frame as fast as it is read
    synthetic://640x480@30?objects=3&seed=0
                                          moving shapes with ground-truth masks

`open_source(url)` returns a `FrameSource`; `read()` gives a `Frame` (RGB image plus
source id, index, monotonic and wall-clock capture time, size) or None at the end of a
file. Everything that goes wrong is a `SourceError` whose message names the source with
its credentials redacted and says what to do.
"""
from __future__ import annotations

import re
from pathlib import Path

from rtseg.sources.base import Frame, FrameSource, SourceError, SourceLost
from rtseg.sources.file import ImageFolderSource, VideoFileSource
from rtseg.sources.network import NetworkSource
from rtseg.sources.redact import redact_url, scrub
from rtseg.sources.synthetic import SyntheticScene, SyntheticSource, parse_bool
from rtseg.sources.webcam import WebcamSource

__all__ = [
    "Frame", "FrameSource", "SourceError", "SourceLost", "file_source_path", "open_source", "source_kind",
    "redact_url",
    "scrub", "SyntheticScene", "SyntheticSource", "VideoFileSource", "ImageFolderSource",
    "NetworkSource", "WebcamSource",
]

NETWORK_SCHEMES = ("rtsp", "rtsps", "http", "https", "rtmp")
_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://")
_FILE_OPTIONS = {"realtime", "fps"}
SOURCE_HELP = "use 0 or /dev/videoN, rtsp://..., http(s)://..., a video file or folder, or synthetic://640x480@30"


def source_kind(url: str) -> str:
    """'webcam', 'network', 'synthetic' or 'file' (video file or folder) for a source string."""
    text = str(url).strip()
    if text.isdigit() or text.startswith("/dev/video"):
        return "webcam"
    m = _SCHEME.match(text)
    scheme = m["scheme"].lower() if m else ""
    if scheme in NETWORK_SCHEMES:
        return "network"
    if scheme == "synthetic":
        return "synthetic"
    if scheme in ("", "file"):
        return "file"
    raise SourceError(f"unknown source scheme {scheme!r} in {redact_url(text)!r}; {SOURCE_HELP}")


def _split_file_url(text: str) -> tuple[Path, dict[str, str]]:
    text = text.removeprefix("file://")
    if Path(text).exists() or "?" not in text:
        return Path(text), {}
    path, _, query = text.rpartition("?")
    opts = dict(p.split("=", 1) if "=" in p else (p, "") for p in query.split("&") if p)
    unknown = set(opts) - _FILE_OPTIONS
    if unknown:
        raise SourceError(f"unknown option(s) {sorted(unknown)} in {text!r}; file sources know: realtime, fps")
    return Path(path), opts


def file_source_path(url: str) -> Path | None:
    """The video file or image folder a file source string names (options stripped, and
    checked); None for webcams, network streams and synthetic sources."""
    text = str(url).strip()
    return _split_file_url(text)[0] if source_kind(text) == "file" else None


def open_source(
    url: str,
    *,
    source_id: str | None = None,
    width: int | None = None,
    height: int | None = None,
    fps: float | None = None,
    open_timeout_s: float = 5.0,
    read_timeout_s: float = 5.0,
) -> FrameSource:
    """Open the source a URL-like string names (see the module doc). width/height/fps are
    requests: a webcam is asked for them, files and streams are resized to width/height
    (one alone keeps the aspect ratio), a file or folder is paced at fps instead of its own.
    Raises SourceError."""
    text = str(url).strip()
    kind = source_kind(text)
    sid = source_id or kind
    if kind == "webcam":
        device: int | str = int(text) if text.isdigit() else text
        return WebcamSource(device, sid, width, height, fps, read_timeout_s)
    if kind == "network":
        return NetworkSource(text, sid, width, height, open_timeout_s, read_timeout_s)
    if kind == "synthetic":
        return SyntheticSource(text, sid, width, height, fps)
    path, opts = _split_file_url(text)
    realtime = parse_bool(opts.get("realtime", "true"), f"{text}: realtime")
    if "fps" in opts:
        try:
            fps = float(opts["fps"])
        except ValueError:
            raise SourceError(f"{text}: fps={opts['fps']!r} is not a number") from None
    if path.is_dir():
        return ImageFolderSource(path, sid, width, height, fps, realtime)
    if not path.exists():
        raise SourceError(f"no such file or folder: {str(path)!r} (relative to {Path.cwd()}); {SOURCE_HELP}")
    return VideoFileSource(path, sid, width, height, fps, realtime)

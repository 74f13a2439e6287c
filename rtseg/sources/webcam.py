"""Local cameras (`0`, `/dev/video0`) through OpenCV's V4L2 backend.

The requested width/height/fps are asked of the device; what it really delivers is read
back and reported by the `width`, `height` and `fps` properties (and logged when it
differs from the request).
"""
from __future__ import annotations

import logging
import os
import sys

import cv2

from rtseg.sources.base import Frame, SourceError, SourceLost, VideoCaptureSource, bgr_to_rgb

log = logging.getLogger(__name__)


def _backend() -> int:
    return cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY


class WebcamSource(VideoCaptureSource):
    """A V4L2 camera by index (0) or device path (/dev/video0)."""

    live = True

    def __init__(
        self,
        device: int | str,
        source_id: str = "webcam",
        width: int | None = None,
        height: int | None = None,
        fps: float | None = None,
        read_timeout_s: float = 5.0,
    ) -> None:
        name = f"/dev/video{device}" if isinstance(device, int) else device
        super().__init__(source_id, name)
        hint = "list the cameras with `v4l2-ctl --list-devices` or `ls /dev/video*`"
        if isinstance(device, str) and not os.path.exists(device):
            raise SourceError(f"no camera at {device}: the device does not exist; {hint}", live=True)
        self._cap = cv2.VideoCapture(device, _backend())
        if not self._cap.isOpened():
            self.close()
            raise SourceError(
                f"cannot open camera {name}: it is missing, busy in another program, or not readable "
                f"by this user (try `sudo usermod -aG video $USER`); {hint}",
                live=True,
            )
        requests = [(cv2.CAP_PROP_FRAME_WIDTH, width), (cv2.CAP_PROP_FRAME_HEIGHT, height), (cv2.CAP_PROP_FPS, fps)]
        for prop, value in requests:
            if value:
                self._cap.set(prop, float(value))
        self._cap.set(cv2.CAP_PROP_READ_TIMEOUT_MSEC, float(read_timeout_s * 1000))
        first = self._read_first()
        if first is None:
            raise SourceError(f"camera {name} opened but gave no frame; unplug and replug it, or {hint}", live=True)
        self._size = (first.shape[1], first.shape[0])
        reported = self._cap.get(cv2.CAP_PROP_FPS)
        self._fps = float(reported) if 0 < reported < 1000 else float(fps or 0.0)
        asked = (width or self.width, height or self.height, fps or self._fps)
        if asked != (self.width, self.height, self._fps):
            log.info("camera %s delivers %dx%d @ %.3g fps (asked for %dx%d @ %.3g)", name,
                     self.width, self.height, self._fps, *asked)

    def read(self) -> Frame | None:
        if self._cap is None:
            raise SourceLost(f"camera {self.url} is closed")
        bgr = self._next_bgr()
        if bgr is None:
            raise SourceLost(f"camera {self.url} stopped delivering frames after {self._index} (unplugged?)")
        return self._stamp(bgr_to_rgb(bgr))

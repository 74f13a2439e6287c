"""MP4 files (OpenCV, mp4v) written next to a segment by the recorder and by `rtseg export`.

An MP4 is only playable once closed (its index is written last), so the recorder writes
`<stem>.<camera>.part.mp4` and renames it when the segment closes; the frames themselves are
also in the segment's log, from which `rtseg export --to mp4` rebuilds a video after a crash.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import cv2
import numpy as np

from rtseg.recording.segment import RecordingWriteError, write_error

log = logging.getLogger(__name__)


class Mp4Writer:
    """Frames of one size at a fixed rate into `part_path`; `close()` renames it to `path`.
    Frames of another size are scaled to the first frame's size."""

    def __init__(self, path: Path, fps: float, *, part_path: Path | None = None):
        self.path = Path(path)
        self.part_path = Path(part_path) if part_path else self.path
        self.fps = float(fps)
        self.size: tuple[int, int] | None = None  # (width, height)
        self.frames = 0
        self._writer: cv2.VideoWriter | None = None

    def write(self, rgb: np.ndarray) -> None:
        if self._writer is None:
            h, w = rgb.shape[:2]
            self.size = (w, h)
            self._writer = cv2.VideoWriter(str(self.part_path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, self.size)
            if not self._writer.isOpened():
                self._writer = None
                try:  # find out why: a folder problem gets the usual clear error
                    with open(self.part_path, "ab"):
                        pass
                except OSError as e:
                    raise write_error("create the video", self.part_path, e) from None
                raise RecordingWriteError(f"OpenCV cannot write MP4 (mp4v) to {self.part_path}: its FFmpeg backend "
                                   f"lacks the mp4v encoder; set recorder.video: none")
        if (rgb.shape[1], rgb.shape[0]) != self.size:
            rgb = cv2.resize(rgb, self.size, interpolation=cv2.INTER_AREA)
        self._writer.write(np.ascontiguousarray(rgb[..., ::-1]))
        self.frames += 1

    def close(self) -> Path | None:
        """Finish the file and rename it into place; None if no frame was written."""
        if self._writer is None:
            return None
        self._writer.release()
        self._writer = None
        try:
            fd = os.open(self.part_path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            if self.part_path != self.path:
                os.rename(self.part_path, self.path)
        except OSError as e:
            raise write_error("finish the video", self.part_path, e) from None
        return self.path

    def abandon(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None

"""Video files (mp4/avi/mkv/... through OpenCV's FFmpeg) and folders of images.

Both are paced to their own frame rate like a live camera by default; `?realtime=false`
after the path delivers every frame as fast as the consumer reads. A folder plays its
images in name order (natural order: img2 before img10) at `fps` (default 30).
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

import cv2
import numpy as np

from rtseg.sources.base import (
    Frame, Pacer, SizedSource, SourceError, VideoCaptureSource, bgr_to_rgb, target_size,
)

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
DEFAULT_FOLDER_FPS = 30.0


def _natural_key(path: Path) -> list[object]:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


class VideoFileSource(VideoCaptureSource):
    """A video file decoded by OpenCV's FFmpeg backend; read() returns None at its end."""

    def __init__(
        self,
        path: Path,
        source_id: str = "file",
        width: int | None = None,
        height: int | None = None,
        fps: float | None = None,
        realtime: bool = True,
    ) -> None:
        super().__init__(source_id, str(path))
        if not path.is_file():
            raise SourceError(f"video file {str(path)!r} does not exist; check the path (relative to {Path.cwd()})")
        self._cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
        first = self._read_first()
        if first is None:
            raise SourceError(
                f"cannot decode video file {str(path)!r}: it is corrupt, empty, or in a format OpenCV's "
                f"FFmpeg cannot read; check it with `ffprobe {path}` or re-encode it to H.264 mp4"
            )
        file_fps = self._cap.get(cv2.CAP_PROP_FPS)
        self._fps = fps or (file_fps if 0 < file_fps < 1000 else 30.0)
        self._size = target_size(first.shape[1], first.shape[0], width, height)
        self._pacer = Pacer(self._fps, realtime)
        log.debug("opened %s: %dx%d @ %.2f fps", self.url, first.shape[1], first.shape[0], self._fps)

    def resume_at(self, index: int) -> None:
        if index > self._index and self._cap is not None:
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, index)
            self._pending = None  # the first frame, read at open, is not the one to resume at
        super().resume_at(index)

    def read(self) -> Frame | None:
        bgr = self._next_bgr()
        if bgr is None:
            return None
        image = bgr_to_rgb(bgr, self._size)
        self._pacer.wait()
        return self._stamp(image)


class ImageFolderSource(SizedSource):
    """The images of a folder, in natural name order; a file that cannot be decoded is an
    error naming it. Images of different sizes are allowed unless a size is requested."""

    def __init__(
        self,
        folder: Path,
        source_id: str = "folder",
        width: int | None = None,
        height: int | None = None,
        fps: float | None = None,
        realtime: bool = True,
    ) -> None:
        super().__init__(source_id, str(folder))
        self._files = sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=_natural_key)
        if not self._files:
            raise SourceError(
                f"image folder {str(folder)!r} has no images ({', '.join(sorted(IMAGE_SUFFIXES))}); "
                "point the source at a folder of frames or at a video file"
            )
        self._want = (width, height)
        self._fps = fps or DEFAULT_FOLDER_FPS
        self._pacer = Pacer(self._fps, realtime)
        first = self._load(self._files[0])
        self._size = (first.shape[1], first.shape[0])

    def _load(self, path: Path) -> np.ndarray:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise SourceError(
                f"cannot decode image {str(path)!r} (corrupt or not an image); remove it from the folder or replace it"
            )
        return bgr_to_rgb(bgr, target_size(bgr.shape[1], bgr.shape[0], *self._want))

    def read(self) -> Frame | None:
        if self._index >= len(self._files):
            return None
        image = self._load(self._files[self._index])
        self._size = (image.shape[1], image.shape[0])
        self._pacer.wait()
        return self._stamp(image)

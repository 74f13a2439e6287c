"""The one small interface every frame source implements, and the frame it delivers."""
from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from types import TracebackType

import cv2
import numpy as np


class SourceError(RuntimeError):
    """A source that cannot be opened or read. The message names the (redacted) source and
    says what to do; `live` tells the capture process whether retrying can help."""

    def __init__(self, message: str, *, live: bool = False) -> None:
        super().__init__(message)
        self.live = live


class SourceLost(SourceError):
    """A live source that was delivering frames and stopped (camera unplugged, network down)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, live=True)


@dataclass(frozen=True, eq=False)
class Frame:
    """One captured image. `image` is HxWx3 uint8 RGB; times are `time.monotonic_ns()` and
    `time.time_ns()` taken when the frame was decoded. `gt_masks` (object id -> HxW bool,
    visible pixels only) is set by the synthetic source only, None for real cameras."""

    image: np.ndarray
    source_id: str
    index: int
    t_mono_ns: int
    t_wall_ns: int
    width: int
    height: int
    gt_masks: dict[int, np.ndarray] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        img = self.image
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"Frame.image must be HxWx3 uint8 RGB, got {img.dtype} {img.shape}")
        if img.shape[:2] != (self.height, self.width):
            raise ValueError(
                f"Frame width/height {self.width}x{self.height} do not match image {img.shape[1]}x{img.shape[0]}"
            )

    @classmethod
    def now(cls, image: np.ndarray, source_id: str, index: int, **extra: object) -> Frame:
        """A frame stamped with the current monotonic and wall-clock time."""
        return cls(
            image=image,
            source_id=source_id,
            index=index,
            t_mono_ns=time.monotonic_ns(),
            t_wall_ns=time.time_ns(),
            width=image.shape[1],
            height=image.shape[0],
            **extra,  # type: ignore[arg-type]
        )


class FrameSource(ABC):
    """A camera, stream, file or generator of frames. `read()` returns the next frame, or
    None at the end of a finite stream; it raises SourceError (SourceLost for a live source
    that stopped) and never blocks longer than the source's read timeout."""

    #: True for cameras and streams (worth reconnecting), False for files and synthetic.
    live: bool = False

    def __init__(self, source_id: str, url: str) -> None:
        self.source_id = source_id
        self.url = url  # already redacted: safe to log
        self._index = 0

    @property
    @abstractmethod
    def width(self) -> int: ...

    @property
    @abstractmethod
    def height(self) -> int: ...

    @property
    @abstractmethod
    def fps(self) -> float: ...

    @abstractmethod
    def read(self) -> Frame | None: ...

    def resume_at(self, index: int) -> None:
        """Continue a stream whose frames up to index-1 were already delivered (by an earlier
        connection or capture process): a live source numbers its next frame `index`, a file
        or synthetic source also starts at that frame. Indices of a camera never repeat."""
        self._index = index

    def close(self) -> None:  # noqa: B027 - optional for sources with nothing to release
        """Release the device or file; safe to call twice."""

    def _stamp(self, image: np.ndarray, **extra: object) -> Frame:
        frame = Frame.now(image, self.source_id, self._index, **extra)
        self._index += 1
        return frame

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r}, {self.width}x{self.height}@{self.fps:g})"


class SizedSource(FrameSource):
    """A source that keeps its size in `_size` (width, height) and its rate in `_fps`."""

    _size: tuple[int, int]
    _fps: float

    @property
    def width(self) -> int:
        return self._size[0]

    @property
    def height(self) -> int:
        return self._size[1]

    @property
    def fps(self) -> float:
        return self._fps


class VideoCaptureSource(SizedSource):
    """A source read through a cv2.VideoCapture (webcam, network stream, video file). Its
    __init__ opens `_cap`, calls `_read_first()` so that a capture that cannot deliver fails
    at open rather than at the first read, and sets `_size` and `_fps`."""

    _cap: cv2.VideoCapture | None
    _pending: np.ndarray | None = None

    def _read_first(self) -> np.ndarray | None:
        """The capture's first frame, kept for the first read(); None, and the capture
        released, when it is not open or gives no frame."""
        first = self._next_bgr() if self._cap is not None and self._cap.isOpened() else None
        if first is None:
            self.close()
        self._pending = first
        return first

    def _next_bgr(self) -> np.ndarray | None:
        """The frame read at open, then the capture's next ones; None when it gives none
        (end of file, stream stopped, read timeout) or is closed."""
        if self._cap is None:
            return None
        if self._pending is not None:
            bgr, self._pending = self._pending, None
            return bgr
        ok, bgr = self._cap.read()
        return bgr if ok else None

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


def target_size(src_w: int, src_h: int, width: int | None, height: int | None) -> tuple[int, int]:
    """Output size for a requested width and/or height (one alone keeps the aspect ratio)."""
    if width and height:
        return width, height
    if width:
        return width, max(1, round(src_h * width / src_w))
    if height:
        return max(1, round(src_w * height / src_h)), height
    return src_w, src_h


def bgr_to_rgb(image: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
    """OpenCV's BGR (or gray/BGRA) image as contiguous RGB, resized to size=(w, h) if given."""
    if image.ndim == 2:
        rgb = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    elif image.shape[2] == 4:
        rgb = cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    else:
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if size is not None and (rgb.shape[1], rgb.shape[0]) != size:
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    return rgb


class Pacer:
    """Delivers frames at `fps` like a live camera: sleeps until each frame is due and never
    bursts to catch up after a slow consumer (the schedule restarts from now instead)."""

    def __init__(self, fps: float, enabled: bool = True) -> None:
        self.period_ns = int(1e9 / fps) if fps > 0 else 0
        self.enabled = enabled and self.period_ns > 0
        self._next_ns: int | None = None

    def wait(self) -> None:
        if not self.enabled:
            return
        now = time.monotonic_ns()
        if self._next_ns is None or now - self._next_ns > self.period_ns:
            self._next_ns = now
        elif self._next_ns > now:
            time.sleep((self._next_ns - now) / 1e9)
        self._next_ns += self.period_ns

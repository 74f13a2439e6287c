"""`synthetic://640x480@30?objects=3&seed=0`: a test-pattern camera with ground truth.

Coloured shapes (discs, boxes, triangles) bounce over a textured background at fixed depths,
so they pass in front of each other. Everything is a pure function of (seed, frame index):
the same URL gives the same pixels on every machine, and `SyntheticScene.masks(index)`
recomputes an object's visible pixels for any frame (for example one that travelled through
the ring, which carries pixels only). Object ids are 1..objects.

Query options: objects (default 3), seed (0), frames (0 = endless), realtime (true: paced at
the given fps like a live camera; false: as fast as the consumer reads).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import cv2
import numpy as np

from rtseg.sources.base import Frame, FrameSource, Pacer, SourceError

_SIZE = re.compile(r"^(?P<w>\d+)x(?P<h>\d+)(?:@(?P<fps>\d+(?:\.\d+)?))?$")
SHAPES = ("disc", "box", "triangle")


@dataclass(frozen=True)
class _Obj:
    obj_id: int
    shape: str
    size: float  # radius-like, pixels
    color: tuple[int, int, int]
    start: tuple[float, float]
    velocity: tuple[float, float]  # pixels per frame
    spin: float  # radians per frame (boxes and triangles)


def _bounce(x: float, lo: float, hi: float) -> float:
    """x folded into [lo, hi] like a ball bouncing between two walls."""
    span = hi - lo
    if span <= 0:
        return lo
    r = (x - lo) % (2 * span)
    return lo + (r if r <= span else 2 * span - r)


class SyntheticScene:
    """The deterministic scene behind a synthetic source."""

    def __init__(self, width: int, height: int, objects: int = 3, seed: int = 0) -> None:
        self.width, self.height = width, height
        rng = np.random.default_rng(seed)
        self.background = self._texture(rng)
        unit = min(width, height)
        self.objects: list[_Obj] = []
        for i in range(objects):
            size = float(rng.uniform(0.08, 0.16) * unit)
            hue = (i * 180 // max(objects, 1) + int(rng.integers(0, 20))) % 180
            rgb = cv2.cvtColor(np.uint8([[[hue, 220, 230]]]), cv2.COLOR_HSV2RGB)[0, 0]
            speed = rng.uniform(0.004, 0.012) * unit
            angle = rng.uniform(0, 2 * np.pi)
            self.objects.append(
                _Obj(
                    obj_id=i + 1,
                    shape=SHAPES[i % len(SHAPES)],
                    size=size,
                    color=tuple(int(c) for c in rgb),
                    start=(float(rng.uniform(size, width - size)), float(rng.uniform(size, height - size))),
                    velocity=(float(speed * np.cos(angle)), float(speed * np.sin(angle))),
                    spin=float(rng.uniform(-0.05, 0.05)),
                )
            )
        # depth order: later in this list is nearer the camera and hides what is behind
        self.depth_order = [self.objects[j] for j in rng.permutation(objects)]

    def _texture(self, rng: np.random.Generator) -> np.ndarray:
        w, h = self.width, self.height
        ch, cw = max(2, h // 32), max(2, w // 32)
        gray = rng.integers(60, 190, size=(ch, cw, 1))
        tint = rng.integers(-25, 26, size=(ch, cw, 3))
        coarse = np.clip(gray + tint, 0, 255).astype(np.uint8)
        base = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC).astype(np.int16)
        fine = rng.integers(-18, 19, size=(h, w, 1), dtype=np.int16)
        yy, xx = np.mgrid[0:h, 0:w]
        grid = (((xx // 24) + (yy // 24)) % 2 * 16 - 8).astype(np.int16)[..., None]
        return np.clip(base + fine + grid, 0, 255).astype(np.uint8)

    def _silhouette(self, obj: _Obj, index: int) -> np.ndarray:
        cx = _bounce(obj.start[0] + obj.velocity[0] * index, obj.size * 0.5, self.width - obj.size * 0.5)
        cy = _bounce(obj.start[1] + obj.velocity[1] * index, obj.size * 0.5, self.height - obj.size * 0.5)
        mask = np.zeros((self.height, self.width), np.uint8)
        if obj.shape == "disc":
            cv2.circle(mask, (round(cx), round(cy)), round(obj.size), 1, thickness=-1, lineType=cv2.LINE_8)
        else:
            corners = 4 if obj.shape == "box" else 3
            angles = obj.spin * index + np.arange(corners) * 2 * np.pi / corners
            pts = np.stack([cx + obj.size * np.cos(angles), cy + obj.size * np.sin(angles)], axis=1)
            cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 1, lineType=cv2.LINE_8)
        return mask.astype(bool)

    def render(self, index: int) -> tuple[np.ndarray, dict[int, np.ndarray]]:
        """(RGB image, {object id: visible-pixel mask}) for frame `index`."""
        image = self.background.copy()
        shapes = [(obj, self._silhouette(obj, index)) for obj in self.depth_order]
        for obj, mask in shapes:  # far to near: nearer objects paint over farther ones
            image[mask] = obj.color
        visible: dict[int, np.ndarray] = {}
        covered = np.zeros((self.height, self.width), bool)
        for obj, mask in reversed(shapes):  # near to far: what nearer objects hide is not visible
            visible[obj.obj_id] = mask & ~covered
            covered |= mask
        return image, dict(sorted(visible.items()))

    def silhouette(self, obj_id: int, index: int) -> np.ndarray:
        """Object obj_id's whole shape at frame `index`, hidden parts included (HxW bool)."""
        return self._silhouette(self.objects[obj_id - 1], index)

    def masks(self, index: int) -> dict[int, np.ndarray]:
        """Ground truth for frame `index`: {object id: HxW bool of its visible pixels}."""
        return self.render(index)[1]


def parse_synthetic(url: str) -> tuple[int, int, float, dict[str, str]]:
    """(width, height, fps, query options) of a synthetic:// URL; SourceError if malformed."""
    body = url.removeprefix("synthetic://")
    spec, _, query = body.partition("?")
    m = _SIZE.match(spec or "640x480@30")
    if not m:
        raise SourceError(
            f"bad synthetic source {url!r}: expected synthetic://WIDTHxHEIGHT@FPS?objects=N&seed=S, "
            "for example synthetic://640x480@30?objects=3&seed=0"
        )
    opts = dict(p.split("=", 1) if "=" in p else (p, "") for p in query.split("&") if p)
    unknown = set(opts) - {"objects", "seed", "frames", "realtime"}
    if unknown:
        raise SourceError(
            f"bad synthetic source {url!r}: unknown option(s) {sorted(unknown)}; "
            "known: objects, seed, frames, realtime"
        )
    return int(m["w"]), int(m["h"]), float(m["fps"] or 30), opts


def _int_opt(opts: dict[str, str], key: str, default: int, url: str) -> int:
    try:
        value = int(opts.get(key, default))
    except ValueError:
        raise SourceError(f"bad synthetic source {url!r}: {key}={opts[key]!r} is not an integer") from None
    if value < 0:
        raise SourceError(f"bad synthetic source {url!r}: {key} must be >= 0, got {value}")
    return value


def parse_bool(value: str, what: str) -> bool:
    low = value.strip().lower()
    if low in ("1", "true", "yes", "on", ""):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise SourceError(f"{what}: expected true or false, got {value!r}")


class SyntheticSource(FrameSource):
    """Frames of a SyntheticScene; each Frame carries `gt_masks`."""

    def __init__(
        self,
        url: str,
        source_id: str = "synthetic",
        width: int | None = None,
        height: int | None = None,
        fps: float | None = None,
    ) -> None:
        super().__init__(source_id, url)
        w, h, url_fps, opts = parse_synthetic(url)
        w, h = width or w, height or h  # an explicit size (camera config) wins over the URL's
        if w < 16 or h < 16:
            raise SourceError(f"bad synthetic source {url!r}: size must be at least 16x16, got {w}x{h}")
        self._fps = fps or url_fps
        self.scene = SyntheticScene(w, h, _int_opt(opts, "objects", 3, url), _int_opt(opts, "seed", 0, url))
        self.frames = _int_opt(opts, "frames", 0, url)
        self._pacer = Pacer(self._fps, parse_bool(opts.get("realtime", "true"), f"{url}: realtime"))

    @property
    def width(self) -> int:
        return self.scene.width

    @property
    def height(self) -> int:
        return self.scene.height

    @property
    def fps(self) -> float:
        return self._fps

    def read(self) -> Frame | None:
        if self.frames and self._index >= self.frames:
            return None
        image, masks = self.scene.render(self._index)
        self._pacer.wait()
        return self._stamp(image, gt_masks=masks)

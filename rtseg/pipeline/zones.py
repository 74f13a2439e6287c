"""Named polygons per camera, and which objects are inside them (numpy + OpenCV, no I/O).

An object is inside a zone when at least `min_overlap` of its mask's pixels lie in the
polygon; it enters (leaves) after `frames` frames in a row inside (outside). While an object
is not visible (empty mask or object score at or below the lifecycle threshold) its zones do
not change: a person behind a parked car is still in the car park. A removed object leaves
every zone it was in. Polygons are in source pixels and rasterised once per frame size.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import cv2
import numpy as np

from rtseg.config import ZoneConfig
from rtseg.pipeline.lifecycle import Transition

ENTERED, LEFT = "entered_zone", "left_zone"


class ZoneError(ValueError):
    """A zone that does not fit the camera's frames."""


def rasterize(polygon: Sequence[Sequence[float]], height: int, width: int) -> np.ndarray:
    """HxW bool: the pixels whose centres lie in the polygon (1/16 px precision)."""
    pts = np.round(np.asarray(polygon, np.float64) * 16).astype(np.int32)
    out = np.zeros((height, width), np.uint8)
    cv2.fillPoly(out, [pts], 1, lineType=cv2.LINE_8, shift=4)
    return out.astype(bool)


@dataclass
class _Membership:
    inside: bool = False
    run: int = 0  # frames in a row whose inside-ness differs from `inside`


@dataclass
class ZoneTracker:
    zones: Sequence[ZoneConfig] = ()
    score_threshold: float = 0.0
    _masks: dict[str, np.ndarray] = field(default_factory=dict)
    _size: tuple[int, int] | None = None
    _members: dict[tuple[int, str], _Membership] = field(default_factory=dict)

    def fit(self, height: int, width: int) -> None:
        """Rasterise the zones for this frame size; ZoneError naming the zone if one lies outside."""
        if self._size == (height, width):
            return
        for k, z in enumerate(self.zones):
            xs, ys = [p[0] for p in z.polygon], [p[1] for p in z.polygon]
            if max(xs) > width or max(ys) > height:
                raise ZoneError(f"zones.{k} ({z.name!r}) reaches ({max(xs):g}, {max(ys):g}), outside the camera's "
                                f"{width}x{height} frames; zones are in source pixels")
        self._masks = {z.name: rasterize(z.polygon, height, width) for z in self.zones}
        self._size = (height, width)

    def overlap(self, zone: str, mask: np.ndarray, box: Sequence[float]) -> float:
        """The fraction of the mask's pixels inside the zone (0 for an empty mask)."""
        x0, y0, x1, y1 = (int(v) for v in box)
        crop = mask[y0:y1, x0:x1]
        area = int(crop.sum())
        if area == 0:
            return 0.0
        return float(np.count_nonzero(crop & self._masks[zone][y0:y1, x0:x1])) / area

    def inside(self, obj_id: int) -> list[str]:
        return [z for (i, z), m in self._members.items() if i == obj_id and m.inside]

    def update(self, frame_index: int, t_ns: int, obj_ids: Sequence[int], masks: np.ndarray,
               scores: Sequence[float], boxes: np.ndarray) -> list[Transition]:
        """One frame's objects (masks (N, H, W) bool, boxes (N, 4) xyxy): enter/leave events."""
        if not self.zones:
            return []
        self.fit(int(masks.shape[1]), int(masks.shape[2]))
        out = []
        for k, obj_id in enumerate(obj_ids):
            score, box = float(scores[k]), tuple(float(v) for v in boxes[k])
            if score <= self.score_threshold or not any(box):
                continue  # not visible: zones stay as they were
            for z in self.zones:
                now_inside = self.overlap(z.name, masks[k], box) >= z.min_overlap
                m = self._members.setdefault((int(obj_id), z.name), _Membership())
                m.run = m.run + 1 if now_inside != m.inside else 0
                if m.run >= z.frames:
                    m.inside, m.run = now_inside, 0
                    out.append(Transition(ENTERED if now_inside else LEFT, int(obj_id), "", None, frame_index, t_ns,
                                          None, box, score, z.name))  # type: ignore[arg-type]
        return out

    def remove(self, obj_id: int, frame_index: int, t_ns: int, box=(0.0, 0.0, 0.0, 0.0),
               score: float = 0.0) -> list[Transition]:
        """A removed object leaves every zone it was in."""
        out = []
        for key in [k for k in self._members if k[0] == obj_id]:
            if self._members.pop(key).inside:
                out.append(Transition(LEFT, obj_id, "", None, frame_index, t_ns, None, tuple(box), score, key[1]))
        return out

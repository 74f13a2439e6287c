"""Masks drawn on a frame (recorder's overlay video, `rtseg export --to mp4`) in the viewer's
colours (rtseg.view.overlay.object_color: one palette), the recent masks of each camera by frame
index (to draw on the frame of the same index), and the DAVIS palette of exported PNG files."""
from __future__ import annotations

from collections import OrderedDict
from functools import lru_cache

import cv2
import numpy as np

from rtseg.protocol import MasksMessage
from rtseg.view.overlay import object_color


class RecentMasks:
    """The last `keep` masks messages of each camera, by frame index. Frames and masks come on
    separate topics; `for_frame` gives the masks of that very frame, else the newest earlier ones."""

    def __init__(self, keep: int = 64):
        self.keep = keep
        self._by_camera: dict[str, OrderedDict[int, MasksMessage]] = {}

    def add(self, msg: MasksMessage) -> None:
        recent = self._by_camera.setdefault(msg.camera, OrderedDict())
        recent[msg.frame_index] = msg
        while len(recent) > self.keep:
            recent.popitem(last=False)

    def for_frame(self, camera: str, frame_index: int) -> MasksMessage | None:
        recent = self._by_camera.get(camera) or {}
        match = recent.get(frame_index)
        if match is None:
            earlier = [i for i in recent if i <= frame_index]
            match = recent[max(earlier)] if earlier else None
        return match


@lru_cache(maxsize=1)
def davis_palette() -> np.ndarray:
    """The 256-colour palette of DAVIS / PASCAL VOC annotation PNGs (index 0 black, 1 red, 2 green...):
    the format's own colours for `rtseg export --to davis`; drawn masks use object_color."""
    palette = np.zeros((256, 3), np.uint8)
    for i in range(256):
        c, r, g, b = i, 0, 0, 0
        for bit in range(8):
            r |= ((c >> 0) & 1) << (7 - bit)
            g |= ((c >> 1) & 1) << (7 - bit)
            b |= ((c >> 2) & 1) << (7 - bit)
            c >>= 3
        palette[i] = (r, g, b)
    return palette


def draw_masks(rgb: np.ndarray, masks: MasksMessage | None, *, alpha: float = 0.5) -> np.ndarray:
    """A copy of the HxWx3 uint8 RGB frame with each object's mask blended in its colour,
    outlined, and labelled `id score`. Masks of another size are scaled to the frame."""
    out = np.array(rgb, dtype=np.uint8, copy=True)
    if masks is None:
        return out
    h, w = out.shape[:2]
    for obj in masks.objects:
        mask = obj.mask()
        if mask.shape != (h, w):
            mask = cv2.resize(mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)
        if not mask.any():
            continue
        color = np.array(object_color(obj.obj_id), np.float32)
        out[mask] = (out[mask] * (1 - alpha) + color * alpha).astype(np.uint8)
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, tuple(int(v) for v in color), 2)
        ys, xs = np.nonzero(mask)
        org = (int(xs.min()), max(12, int(ys.min()) - 4))
        cv2.putText(out, f"{obj.obj_id} {obj.score:+.1f}", org, cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                    tuple(int(v) for v in color), 1, cv2.LINE_AA)
    return out

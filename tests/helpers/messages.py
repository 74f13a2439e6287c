"""One way to build the masks messages tests publish, record and draw."""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from rtseg.protocol import MasksMessage


def boxes_of(masks: np.ndarray) -> np.ndarray:
    """xyxy boxes (x1, y1 exclusive) of an NxHxW bool stack; [0, 0, 0, 0] for an empty mask."""
    boxes = []
    for m in masks:
        ys, xs = np.nonzero(m)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] if xs.size else [0, 0, 0, 0])
    return np.asarray(boxes, np.float32).reshape(-1, 4)


def masks_of(camera: str, frame_index: int, masks: dict[int, np.ndarray], *, size: tuple[int, int] | None = None,
             scores: list[float] | None = None, **fields: Any) -> MasksMessage:
    """A MasksMessage of `masks` (object id -> HxW bool; `size` (h, w) when there is none), boxes
    from the masks, score 2.5 each unless given, and now as the capture and processing times
    unless `fields` (capture_ns, capture_wall_ns, processed_ns, latency_ms, ...) say otherwise."""
    ids = sorted(masks)
    h, w = next(iter(masks.values())).shape if masks else size  # type: ignore[misc]
    stack = np.stack([masks[i] for i in ids]) if ids else np.zeros((0, h, w), bool)
    now = time.monotonic_ns()
    times = {"capture_ns": now, "capture_wall_ns": time.time_ns(), "processed_ns": now}
    return MasksMessage.from_arrays(camera, frame_index, obj_ids=ids, masks=stack,
                                    scores=[2.5] * len(ids) if scores is None else scores, boxes=boxes_of(stack),
                                    **{**times, **fields})

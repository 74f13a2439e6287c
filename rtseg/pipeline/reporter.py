"""Per camera: what the segmenter publishes about its objects beyond SAM 2's raw output.

`ObjectReporter.process` takes one frame's engine result and returns the masks to publish
(cleaned when `clean_masks` is on: SAM 2's memory keeps the raw ones), each object's
lifecycle state, and the events of that frame (lifecycle transitions, then zone entries and
exits) as `ObjectEvent`s for `event.<camera>`. Removals (a request, a reset, auto-removal of
long-lost objects) go through `removed`, which also makes the object leave its zones.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass

import numpy as np

from rtseg.config import CameraConfig
from rtseg.pipeline.cleanup import clean_masks
from rtseg.pipeline.lifecycle import LifecycleTracker, Transition
from rtseg.pipeline.zones import ZoneError, ZoneTracker
from rtseg.protocol import ObjectEvent

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Report:
    masks: np.ndarray  # (N, H, W) bool: what to publish
    boxes: np.ndarray  # (N, 4) float32 xyxy of those masks
    states: list[str]
    events: list[ObjectEvent]


class ObjectReporter:
    def __init__(self, camera: CameraConfig) -> None:
        self.camera = camera.id
        self.cfg = camera
        self.lifecycle = LifecycleTracker(camera.lifecycle)
        self.zones = ZoneTracker(camera.zones, camera.lifecycle.score_threshold)
        self._frame = (-1, 0, 0)  # (frame_index, capture_ns, capture_wall_ns) of the latest frame

    def _event(self, t: Transition, wall_ns: int) -> ObjectEvent:
        state = t.state or self.lifecycle.state(t.obj_id) or "removed"
        return ObjectEvent(self.camera, t.event, t.obj_id, t.frame_index, t.t_ns, wall_ns, state, t.box,
                           t.score, t.previous, t.duration_s, t.zone)

    def process(self, frame_index: int, capture_ns: int, capture_wall_ns: int, obj_ids, masks: np.ndarray,
                scores, boxes: np.ndarray) -> Report:
        self._frame = (frame_index, capture_ns, capture_wall_ns)
        masks, boxes = clean_masks(masks, boxes, self.cfg.clean_masks)
        changes = self.lifecycle.update(frame_index, capture_ns, obj_ids, scores, boxes)
        for t in list(changes):
            if t.event == "removed":  # gone from the engine without a removal through us
                changes.extend(self.zones.remove(t.obj_id, frame_index, capture_ns, t.box, t.score))
        try:
            changes += self.zones.update(frame_index, capture_ns, obj_ids, masks, scores, boxes)
        except ZoneError as e:
            log.error("camera %s: %s; zones are off for this camera", self.camera, e)
            self.zones = ZoneTracker((), 0.0)
        events = [self._event(t, capture_wall_ns) for t in changes]
        return Report(masks, boxes, self.lifecycle.states(obj_ids), events)

    def expired(self) -> list[int]:
        """Objects lost for longer than lifecycle.remove_after_s (never, when it is not set)."""
        return self.lifecycle.expired(self._frame[1])

    def removed(self, obj_ids) -> list[ObjectEvent]:
        """Objects removed now (request, reset, auto-removal): left_zone events, then removed."""
        frame_index = self._frame[0]
        now_ns, wall_ns = time.monotonic_ns(), time.time_ns()
        out = []
        for obj_id in obj_ids:
            if obj_id not in self.lifecycle.objects:
                continue
            box = self.lifecycle.last_box(obj_id)
            left = self.zones.remove(obj_id, frame_index, now_ns, box)
            gone = self.lifecycle.remove(obj_id, frame_index, now_ns)
            out += [self._event(t, wall_ns) for t in left]
            out.append(dataclasses.replace(self._event(gone, wall_ns), state="removed"))
        return out

"""Zones on crafted masks: inside by mask-area fraction, enter/leave with hysteresis."""
from __future__ import annotations

import numpy as np
import pytest

from rtseg.config import ZoneConfig
from rtseg.pipeline.zones import ZoneError, ZoneTracker, rasterize

H, W = 60, 80
LEFT_HALF = ZoneConfig(name="left", polygon=[(0, 0), (40, 0), (40, 60), (0, 60)], min_overlap=0.5, frames=2)


def square(x0, y0, size=10):
    m = np.zeros((H, W), bool)
    m[y0:y0 + size, x0:x0 + size] = True
    return m


def box(m):
    ys, xs = np.nonzero(m)
    return [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] if xs.size else [0, 0, 0, 0]


def feed(tracker, frame, masks: dict, scores=None):
    ids = list(masks)
    arr = np.stack([masks[i] for i in ids]) if ids else np.zeros((0, H, W), bool)
    sc = [1.0] * len(ids) if scores is None else scores
    return [(t.event, t.obj_id, t.zone) for t in
            tracker.update(frame, frame * 10**8, ids, arr, sc, np.asarray([box(m) for m in arr], np.float32))]


def test_rasterize_covers_pixel_centres_inside():
    m = rasterize([(0, 0), (40, 0), (40, 60), (0, 60)], H, W)
    assert m[:, :40].all() and not m[:, 41:].any()


def test_enter_and_leave_by_area_fraction_with_hysteresis():
    z = ZoneTracker([LEFT_HALF])
    assert feed(z, 0, {1: square(50, 10)}) == []  # outside
    assert feed(z, 1, {1: square(33, 10)}) == []  # 7/10 inside: one frame is not enough (frames=2)
    assert feed(z, 2, {1: square(33, 10)}) == [("entered_zone", 1, "left")]
    assert z.inside(1) == ["left"]
    assert feed(z, 3, {1: square(37, 10)}) == []  # 3/10 inside: below min_overlap, first frame
    assert feed(z, 4, {1: square(33, 10)}) == []  # back inside: the run restarts
    assert feed(z, 5, {1: square(37, 10)}) == []
    assert feed(z, 6, {1: square(37, 10)}) == [("left_zone", 1, "left")]
    assert z.inside(1) == []


def test_hidden_objects_keep_their_zones_and_removed_ones_leave():
    z = ZoneTracker([LEFT_HALF.model_copy(update={"frames": 1})])
    assert feed(z, 0, {1: square(5, 5), 2: square(60, 5)}) == [("entered_zone", 1, "left")]
    empty = np.zeros((H, W), bool)
    assert feed(z, 1, {1: empty, 2: square(60, 5)}, scores=[-5.0, 1.0]) == []  # occluded: still inside
    assert z.inside(1) == ["left"]
    assert [(t.event, t.zone) for t in z.remove(1, 2, 0)] == [("left_zone", "left")]
    assert z.remove(2, 2, 0) == []  # was never inside


def test_a_zone_outside_the_frame_is_refused():
    z = ZoneTracker([ZoneConfig(name="far", polygon=[(0, 0), (100, 0), (100, 10)])])
    with pytest.raises(ZoneError, match=r"zones.0 \('far'\).*outside the camera's 80x60"):
        feed(z, 0, {1: square(5, 5)})

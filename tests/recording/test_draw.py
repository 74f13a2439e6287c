"""Masks drawn into videos: the viewer's colours (one palette), and the masks matched to a frame."""
from __future__ import annotations

import numpy as np

from rtseg.protocol import MasksMessage
from rtseg.recording.draw import RecentMasks, draw_masks
from rtseg.view.overlay import OverlayStyle, decode_objects, draw_overlay, object_color


def _masks(camera: str, frame_index: int, obj_id: int = 3) -> MasksMessage:
    mask = np.zeros((1, 40, 60), bool)
    mask[0, 20:35, 10:40] = True
    return MasksMessage.from_arrays(camera, frame_index, obj_ids=[obj_id], masks=mask, scores=[2.0],
                                    boxes=np.array([[10, 20, 40, 35]]), capture_ns=1, capture_wall_ns=2,
                                    processed_ns=3)


def test_object_3_has_the_same_colour_in_the_viewer_and_the_overlay_video():
    msg = _masks("cam", 0)
    black = np.zeros((40, 60, 3), np.uint8)
    video = draw_masks(black, msg)  # the recorder's overlay MP4 and `rtseg export --to mp4`
    objects, errors = decode_objects(msg.objects, 60, 40)
    viewer = draw_overlay(black, objects, OverlayStyle(labels=False))
    assert not errors
    # the outline is drawn in the object's full colour by both, the inside blended with it
    assert tuple(video[34, 25]) == tuple(viewer[34, 25]) == object_color(3)
    assert object_color(3) != object_color(4)


def test_recent_masks_match_a_frame_by_index_else_the_newest_earlier_ones():
    recent = RecentMasks(keep=3)
    for i in (2, 4, 6, 8):
        recent.add(_masks("a", i))
    recent.add(_masks("b", 5))
    assert recent.for_frame("a", 6).frame_index == 6
    assert recent.for_frame("a", 7).frame_index == 6
    assert recent.for_frame("a", 100).frame_index == 8
    assert recent.for_frame("a", 3) is None  # frame 2 was dropped (keep=3)
    assert recent.for_frame("b", 4) is None and recent.for_frame("b", 5).frame_index == 5
    assert recent.for_frame("c", 5) is None

"""Mask clean-up on crafted masks: islands, holes, opening, closing; boxes follow."""
from __future__ import annotations

import numpy as np

from rtseg.config import CleanMasksConfig
from rtseg.pipeline.cleanup import box_of, clean_masks


def blob():
    m = np.zeros((50, 60), bool)
    m[10:30, 10:40] = True  # the object: 600 px
    m[15:17, 20:22] = False  # a 4 px hole
    m[20:30, 30:35] = False  # a notch open to the outside (not a hole)
    m[40:42, 50:52] = True  # a 4 px island
    m[2, 2] = True  # a 1 px speck
    return m


def run(m, **kw):
    cfg = CleanMasksConfig(**kw)
    masks, boxes = clean_masks(m[None], np.asarray([box_of(m)], np.float32), cfg)
    return masks[0], tuple(boxes[0])


def test_off_by_default_returns_the_masks_unchanged():
    m = blob()
    out, b = run(m)
    assert out is not None and (out == m).all() and b == box_of(m)


def test_remove_islands_and_the_box_follows():
    out, b = run(blob(), remove_islands_px=5)
    assert not out[40:42, 50:52].any() and not out[2, 2]
    assert out[10:30, 10:30].sum() == 20 * 20 - 4  # the object (hole kept)
    assert b == (10.0, 10.0, 40.0, 30.0)


def test_islands_at_the_threshold_stay():
    out, _ = run(blob(), remove_islands_px=4)
    assert out[40:42, 50:52].all() and not out[2, 2]


def test_fill_holes_but_not_notches():
    m = blob()
    out, _ = run(m, fill_holes_px=10)
    assert out[15:17, 20:22].all()
    assert not out[20:30, 30:35].any()  # open to the outside: not a hole
    assert (out ^ m).sum() == 4


def test_opening_removes_thin_parts_and_closing_bridges_gaps():
    m = np.zeros((40, 40), bool)
    m[10:30, 5:15] = True
    m[19:21, 15:35] = True  # a 2 px wide arm
    opened, b = run(m, open_px=5)
    assert not opened[19:21, 20:35].any() and opened[12:28, 7:13].all()
    assert b[2] <= 16
    g = np.zeros((40, 40), bool)
    g[10:30, 5:15] = True
    g[10:30, 17:27] = True  # a 2 px gap
    closed, b = run(g, close_px=5)
    assert closed[15:25, 15:17].all() and b == (5.0, 10.0, 27.0, 30.0)


def test_empty_masks_stay_empty():
    out, b = run(np.zeros((20, 20), bool), remove_islands_px=3, fill_holes_px=3, open_px=3, close_px=3)
    assert not out.any() and b == (0.0, 0.0, 0.0, 0.0)


def test_the_background_around_a_small_object_is_not_a_hole():
    m = np.zeros((30, 30), bool)
    m[10:13, 10:13] = True  # its padded crop holds far less background than fill_holes_px
    out, b = run(m, fill_holes_px=1000)
    assert (out == m).all() and b == (10.0, 10.0, 13.0, 13.0)

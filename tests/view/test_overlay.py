"""The viewer's pure parts: mask decoding and drawing, matching masks to frames, object ids,
HUD words. No Qt, no sockets."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from rtseg.protocol import MasksMessage, ObjectResult, decode_rle, encode_rle
from rtseg.view.feed import HeldFrame, Matcher, MasksEntry
from rtseg.view.hud import HudInfo, describe_source, hud_text
from rtseg.view.objects import ObjectBook
from rtseg.view.overlay import (
    DecodedObject,
    OverlayStyle,
    decode_object,
    decode_objects,
    draw_overlay,
    object_color,
)

H, W = 120, 160


def disc(cx: int, cy: int, r: int) -> np.ndarray:
    m = np.zeros((H, W), np.uint8)
    cv2.circle(m, (cx, cy), r, 1, -1)
    return m.astype(bool)


def obj(obj_id: int, mask: np.ndarray, score: float = 2.0) -> ObjectResult:
    return ObjectResult(obj_id, score, (0.0, 0.0, 0.0, 0.0), int(mask.sum()), encode_rle(mask))


def erode(mask: np.ndarray, px: int) -> np.ndarray:
    return cv2.erode(mask.astype(np.uint8), np.ones((2 * px + 1, 2 * px + 1), np.uint8)).astype(bool)


def dilate(mask: np.ndarray, px: int) -> np.ndarray:
    return cv2.dilate(mask.astype(np.uint8), np.ones((2 * px + 1, 2 * px + 1), np.uint8)).astype(bool)


# --------------------------------------------------------------------------- decoding
def test_decode_is_a_tight_crop_of_the_exact_mask() -> None:
    mask = disc(50, 60, 20) | disc(120, 30, 5)
    d = decode_object(4, 1.5, encode_rle(mask), W, H)
    assert (d.obj_id, d.score) == (4, 1.5)
    ys, xs = np.nonzero(mask)
    assert d.box == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    assert d.crop.flags.c_contiguous and d.crop.dtype == bool
    np.testing.assert_array_equal(d.full_mask(H, W), mask)
    assert d.area == mask.sum()


def test_decode_agrees_with_the_protocol_decoder_on_awkward_masks() -> None:
    rng = np.random.default_rng(1)
    cases = [np.ones((H, W), bool), rng.random((H, W)) < 0.3]
    for y, x in ((0, 0), (H - 1, W - 1), (0, W - 1), (H - 1, 0)):
        m = np.zeros((H, W), bool)
        m[y, x] = True
        cases.append(m)
    column_wrap = np.zeros((H, W), bool)
    column_wrap[H - 5:, 10] = True
    column_wrap[:7, 11] = True  # one run across the bottom of column 10 and the top of 11
    cases.append(column_wrap)
    for mask in cases:
        d = decode_object(1, 0.0, encode_rle(mask), W, H)
        np.testing.assert_array_equal(d.full_mask(H, W), decode_rle(encode_rle(mask)))
        np.testing.assert_array_equal(d.full_mask(H, W), mask)


def test_decode_uncompressed_counts_and_empty_masks() -> None:
    mask = disc(40, 40, 10)
    flat = mask.T.reshape(-1)  # column-major runs, starting with zeros
    runs, value, n = [], False, 0
    for v in flat:
        if v != value:
            runs.append(n)
            value, n = v, 0
        n += 1
    runs.append(n)
    d = decode_object(1, 0.0, {"size": [H, W], "counts": runs}, W, H)
    np.testing.assert_array_equal(d.full_mask(H, W), mask)
    empty = decode_object(2, -3.0, encode_rle(np.zeros((H, W), bool)), W, H)
    assert empty.crop.shape == (0, 0) and empty.area == 0


def test_a_bad_mask_is_reported_and_the_others_still_decode() -> None:
    good = obj(1, disc(50, 50, 10))
    wrong_size = ObjectResult(2, 1.0, (0, 0, 0, 0), 1, encode_rle(np.ones((10, 10), bool)))
    corrupt = ObjectResult(3, 1.0, (0, 0, 0, 0), 1, {"size": [H, W], "counts": "zz!"})
    decoded, errors = decode_objects([good, wrong_size, corrupt], W, H)
    assert [d.obj_id for d in decoded] == [1]
    assert len(errors) == 2
    assert "object 2" in errors[0] and "10x10" in errors[0] and f"{W}x{H}" in errors[0]
    assert "object 3" in errors[1]


# --------------------------------------------------------------------------- drawing
def test_mask_colour_where_the_mask_is_and_nowhere_else() -> None:
    frame = np.full((H, W, 3), 90, np.uint8)
    frame[:, :, 2] = 30
    mask = disc(60, 70, 25)
    d = decode_object(3, 2.0, encode_rle(mask), W, H)
    style = OverlayStyle(alpha=0.4, labels=False)
    out = draw_overlay(frame, [d], style)
    color = np.array(object_color(3), float)
    expected = 0.6 * frame[0, 0].astype(float) + 0.4 * color
    inside = erode(mask, 3)
    assert np.abs(out[inside].astype(float) - expected).max() <= 1.0
    outside = ~dilate(mask, 1)
    np.testing.assert_array_equal(out[outside], frame[outside])
    ring = mask & ~erode(mask, 1)  # the border is drawn in the full colour
    assert (out[ring] == np.array(object_color(3), np.uint8)).all()
    np.testing.assert_array_equal(frame[0, 0], [90, 90, 30])  # the input is never written


def test_later_objects_are_drawn_over_earlier_ones_and_selection_thickens_the_outline() -> None:
    frame = np.zeros((H, W, 3), np.uint8)
    a, b = disc(60, 60, 30), disc(80, 60, 30)
    da, db = decode_object(1, 1.0, encode_rle(a), W, H), decode_object(2, 1.0, encode_rle(b), W, H)
    out = draw_overlay(frame, [da, db], OverlayStyle(alpha=1.0, labels=False))
    both = erode(a & b, 3)
    assert (out[both] == np.array(object_color(2), np.uint8)).all()
    plain = draw_overlay(frame, [da], OverlayStyle(alpha=0.0, labels=False))
    thick = draw_overlay(frame, [da], OverlayStyle(alpha=0.0, labels=False), selected=1)
    assert (thick.any(axis=2).sum()) > 1.5 * plain.any(axis=2).sum()


def test_label_shows_near_the_object() -> None:
    frame = np.zeros((240, 320, 3), np.uint8)
    mask = np.zeros((240, 320), bool)
    mask[120:200, 100:200] = True
    d = decode_object(7, 3.25, encode_rle(mask), 320, 240)
    without = draw_overlay(frame, [d], OverlayStyle(labels=False))
    with_label = draw_overlay(frame, [d], OverlayStyle(labels=True))
    changed = np.nonzero((with_label != without).any(axis=2))
    assert changed[0].size > 50
    assert changed[0].max() <= 125 and changed[1].min() >= 100  # just above the box, from its left edge


def test_overlay_refuses_what_is_not_an_rgb_image() -> None:
    with pytest.raises(ValueError, match="HxWx3 uint8 RGB.*float32"):
        draw_overlay(np.zeros((4, 4, 3), np.float32), [])
    with pytest.raises(ValueError, match="alpha must be in"):
        OverlayStyle(alpha=1.5)


def test_an_object_bigger_than_the_frame_is_skipped() -> None:
    big = DecodedObject(1, 1.0, 0, 0, np.ones((H + 10, W), bool))
    out = draw_overlay(np.zeros((H, W, 3), np.uint8), [big], OverlayStyle(labels=False))
    assert not out.any()


# --------------------------------------------------------------------------- matching
def held(index: int) -> HeldFrame:
    return HeldFrame(index, np.zeros((2, 2, 3), np.uint8), index * 1000, index * 1000)


def masks_of(index: int, t: float) -> MasksEntry:
    return MasksEntry(MasksMessage("cam", index, 2, 2, 0, 0, 0), t)


def test_matcher_shows_the_newest_frame_that_has_its_masks() -> None:
    m = Matcher(frame_buffer=4, stale_s=1.0, now=0.0)
    for i in range(6):
        m.add_frame(held(i), 0.1)
    assert list(m.frames) == [2, 3, 4, 5]
    m.add_masks(masks_of(3, 0.1))
    frame, masks = m.choose(0.1)
    assert frame.index == 3 and masks.index == 3
    m.mark_shown(frame, masks, 0.1)
    assert m.choose(0.2) is None  # frames 4 and 5 wait for their masks
    m.add_masks(masks_of(5, 0.2))
    frame, masks = m.choose(0.2)
    assert (frame.index, masks.index) == (5, 5)


def test_matcher_falls_back_to_live_frames_when_masks_stop_or_never_match() -> None:
    m = Matcher(frame_buffer=3, stale_s=1.0, now=0.0)
    m.add_frame(held(0), 0.0)
    frame, masks = m.choose(0.0)  # nothing on screen yet: the live frame, nothing drawn
    assert frame.index == 0 and masks is None
    m.mark_shown(frame, masks, 0.0)
    m.add_masks(masks_of(0, 0.1))
    frame, masks = m.choose(0.1)  # its masks came: shown again, now with them
    assert (frame.index, masks.index) == (0, 0)
    m.mark_shown(frame, masks, 0.1)
    for i in range(1, 4):
        m.add_frame(held(i), 0.2)
    assert m.choose(0.9) is None  # a slow segmenter: wait for the masks of a held frame
    frame, masks = m.choose(1.2)  # no masks for longer than stale_s: live frames
    assert frame.index == 3 and masks is None
    m.mark_shown(frame, masks, 1.2)
    m.add_frame(held(4), 1.3)
    m.add_masks(masks_of(1, 1.3))  # fresh, but for frame 1, which is no longer held
    assert m.masks_behind()
    frame, masks = m.choose(1.3)
    assert frame.index == 4 and masks is None
    m.mark_shown(frame, masks, 1.3)
    m.add_frame(held(5), 1.4)
    m.add_masks(masks_of(4, 1.4))  # caught up: frame 4 with its masks, though 5 is newer
    frame, masks = m.choose(1.4)
    assert (frame.index, masks.index) == (4, 4)


def test_matcher_draws_masks_on_a_canvas_when_no_frames_come() -> None:
    m = Matcher(frame_buffer=3, stale_s=1.0, now=0.0)
    m.add_masks(masks_of(7, 0.5))
    assert m.choose(0.5) is None  # frames may still come
    frame, masks = m.choose(1.5)
    assert frame is None and masks.index == 7
    m.mark_shown(frame, masks, 1.5)
    assert m.choose(1.6) is None


def test_matcher_starts_over_when_capture_indices_restart() -> None:
    m = Matcher(frame_buffer=8, stale_s=1.0, now=0.0)
    for i in (100, 101, 102):
        m.add_frame(held(i), 0.0)
    m.add_masks(masks_of(101, 0.0))
    m.add_frame(held(0), 0.1)  # the camera reconnected: indices from 0 again
    assert list(m.frames) == [0] and not m.masks
    with pytest.raises(ValueError, match="frame_buffer must be at least 1"):
        Matcher(frame_buffer=0)


# --------------------------------------------------------------------------- objects, HUD
def test_object_book_ids_and_click_targets() -> None:
    book = ObjectBook()
    assert book.target_negative() is None  # a background click needs a selected object
    assert book.target_positive() == 1 and book.selected == 1
    assert book.target_positive() == 1  # further clicks refine the same object
    book.set_known([1, 5])
    book.select(None)
    assert book.target_positive() == 6
    assert book.new_object() == 7  # N: a fresh id, even before the segmenter knows 6
    assert book.rows() == [1, 5, 7]
    book.forget(7)
    assert book.selected is None
    book.update_from_masks([1, 5], [2.5, -1.0], [100, 0])
    assert book.scores == {1: 2.5, 5: -1.0}
    book.set_known([5])
    assert book.scores == {5: -1.0}
    book.clear()
    assert book.next_id() == 8  # removed ids are never handed out again


@pytest.mark.parametrize("status,attempt,words", [
    ("reconnecting", 0, "camera lost, reconnecting"),
    ("reconnecting", 2, "camera lost, reconnecting (attempt 2)"),
    ("lost", 0, "camera lost"),
    ("connected", 0, "camera connected"),
    ("ended", 0, "source ended"),
    (None, 0, "source state unknown"),
])
def test_source_state_words(status: str | None, attempt: int, words: str) -> None:
    assert describe_source(status, attempt) == words


def test_hud_line_has_fps_latency_skipped_and_source() -> None:
    text = hud_text(HudInfo(display_fps=29.94, masks_fps=30.0, latency_ms=41.6, skipped=12, lost_messages=3,
                            source="camera lost, reconnecting (attempt 2)", frame_index=811, objects=1, paused=True))
    for part in ("PAUSED", "29.9 fps", "masks 30.0/s", "latency 42 ms", "skipped 12", "lost msgs 3",
                 "camera lost, reconnecting (attempt 2)", "frame 811", "1 object"):
        assert part in text

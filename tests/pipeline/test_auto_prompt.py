"""Auto prompts without a model: which detector boxes are new (match_boxes), which generated
masks become objects (select_new), the backbone feature sizes for any image size, and the
add_boxes request on a real control socket (validated, one prompt event per added object)."""
from __future__ import annotations

import numpy as np
import pytest
import zmq

from rtseg.client import Subscriber
from rtseg.config import AutoPromptConfig
from rtseg.pipeline.auto_prompt import ADDED, LIMIT, MATCHED, box_iou, feature_sizes, match_boxes, select_new
from rtseg.pipeline.control import ErrorCode
from rtseg.pipeline.publisher import Publisher
from rtseg.protocol import PROTOCOL_VERSION
from tests.helpers.control import H, W, FakeHandler, RawClient, request, serving


def test_box_iou():
    assert box_iou([0, 0, 10, 10], [0, 0, 10, 10]) == 1.0
    assert box_iou([0, 0, 10, 10], [5, 0, 15, 10]) == pytest.approx(50 / 150)
    assert box_iou([0, 0, 10, 10], [10, 0, 20, 10]) == 0.0


def test_overlapping_boxes_match_tracked_objects_and_new_ones_get_ids():
    tracked = {3: (10, 10, 50, 50), 7: (100, 100, 140, 160), 9: (0, 0, 0, 0)}  # 9: hidden, no box
    boxes = [(12, 11, 52, 49),  # object 3
             (200, 10, 240, 60),  # new
             (202, 12, 240, 62),  # the same new object, detected twice
             (101, 100, 139, 158),  # object 7
             (60, 60, 80, 80)]  # new
    out = match_boxes(boxes, tracked, match_iou=0.5, only_new=True, room=10, next_id=10)
    assert [(d.status, d.obj_id) for d in out] == [(MATCHED, 3), (ADDED, 10), (MATCHED, 10), (MATCHED, 7),
                                                    (ADDED, 11)]
    assert out[0].iou == pytest.approx(box_iou(boxes[0], tracked[3]), abs=1e-4)


def test_room_limits_new_objects_and_only_new_false_adds_every_box():
    tracked = {1: (0, 0, 10, 10)}
    out = match_boxes([(0, 0, 10, 10), (20, 20, 30, 30), (40, 40, 50, 50)], tracked, match_iou=0.3, only_new=True,
                      room=1, next_id=2)
    assert [d.status for d in out] == [MATCHED, ADDED, LIMIT] and out[2].obj_id is None
    out = match_boxes([(0, 0, 10, 10), (0, 0, 10, 10)], tracked, match_iou=0.3, only_new=False, room=5, next_id=2)
    assert [(d.status, d.obj_id) for d in out] == [(ADDED, 2), (ADDED, 3)]


def disc(cx, cy, r, h=60, w=80):
    yy, xx = np.mgrid[0:h, 0:w]
    return (xx - cx) ** 2 + (yy - cy) ** 2 < r * r


def candidate(mask, iou=0.9, stability=0.95):
    return {"segmentation": mask, "area": int(mask.sum()), "predicted_iou": iou, "stability_score": stability}


def test_select_new_skips_tracked_overlapping_and_small_masks_and_stops_at_room():
    cfg = AutoPromptConfig(mode="everything", match_iou=0.5, min_area_px=30)
    tracked = [disc(15, 15, 8)]
    cands = [candidate(disc(15, 16, 8)),  # the tracked object again
             candidate(disc(50, 30, 10), iou=0.95),  # new, best
             candidate(disc(51, 30, 10), iou=0.8),  # the same as the best one
             candidate(disc(70, 50, 2)),  # too small (12 px)
             candidate(disc(30, 45, 7), iou=0.7),  # new
             candidate(disc(60, 10, 6), iou=0.6)]  # new, but no room left
    chosen = select_new(cands, tracked, cfg, room=2)
    assert len(chosen) == 2
    assert (chosen[0] == cands[1]["segmentation"]).all() and (chosen[1] == cands[4]["segmentation"]).all()
    assert select_new(cands, tracked, cfg, room=0) == []


def test_feature_sizes_follow_the_image_size():
    assert feature_sizes(1024) == [(256, 256), (128, 128), (64, 64)]  # sam2's hard-coded values
    assert feature_sizes(256) == [(64, 64), (32, 32), (16, 16)]


# ------------------------------------------------------------------ the add_boxes request
@pytest.fixture
def served(ctx: zmq.Context):
    handler = FakeHandler()
    with Publisher("tcp://127.0.0.1:*", context=ctx) as pub, serving(handler, ctx, publisher=pub) as server:
        client = RawClient(ctx, server.endpoint)
        yield handler, client, pub
        client.close()


def test_add_boxes_reaches_the_handler_and_publishes_one_event_per_added_object(served, ctx):
    handler, client, pub = served
    with Subscriber(pub.endpoint, topics=("prompt",), context=ctx) as sub:
        events = []
        for _ in range(50):  # until the subscription is live (slow joiner)
            reply = client.send(request("add_boxes", camera="cam", boxes=[[1, 2, 10, 20], [30, 5, 60, 40.5]],
                                        frame_index=97))
            events = [e for e in iter(lambda: sub.recv(timeout=0.1), None)]
            if events:
                break
    assert reply["ok"] and reply["v"] == PROTOCOL_VERSION and reply["camera"] == "cam"
    assert reply["added"] == [b["obj_id"] for b in reply["boxes"]] and set(reply["added"]) <= set(reply["obj_ids"])
    call = handler.calls[-1]
    assert call.type == "add_boxes" and call.only_new is True and call.frame_index == 97
    np.testing.assert_array_equal(call.boxes, np.array([[1, 2, 10, 20], [30, 5, 60, 40.5]], np.float32))
    assert handler.invalid == []
    assert [(e.op, e.obj_id, e.prompt) for e in events] == [
        ("add_box", reply["added"][0], {"box": [1.0, 2.0, 10.0, 20.0]}),
        ("add_box", reply["added"][1], {"box": [30.0, 5.0, 60.0, 40.5]})]


@pytest.mark.parametrize(("fields", "field", "text"), [
    ({"boxes": []}, "boxes", "list of 1..256"),
    ({"boxes": [1, 2, 3, 4]}, "boxes[0]", "4 numbers"),
    ({"boxes": [[1, 2, 3, 4], [5, 5, 1, 9]]}, "boxes[1]", "inverted"),
    ({"boxes": [[1, 2, W + 5, 4]]}, "boxes[0]", f"outside the {W}x{H} frame"),
    ({"boxes": [[1, 2, 3, 4]], "only_new": 1}, "only_new", "true or false"),
    ({"boxes": [[1, 2, 3, 4]], "obj_id": 3}, "obj_id", "does not take"),
])
def test_bad_add_boxes_is_refused_naming_the_field(served, fields, field, text):
    handler, client, _ = served
    reply = client.send(request("add_boxes", camera="cam", **fields))
    assert not reply["ok"] and reply["error"]["field"] == field and text in reply["error"]["message"], reply
    assert reply["error"]["code"] in (ErrorCode.INVALID_VALUE, ErrorCode.BAD_REQUEST)
    assert handler.calls == []


def test_bench_auto_prompt_tool_runs():
    import json
    import subprocess
    import sys
    from pathlib import Path

    out = subprocess.run([sys.executable, "-W", "error", "tools/bench_auto_prompt.py", "--image-size", "64", "--size",
                          "64x48", "--points-per-side", "2", "--baseline-frames", "1", "--objects", "1"],
                         capture_output=True, text=True, timeout=280, cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout)
    assert report["image_size"] == 64 and report["keyframe_alone_s"] > 0 and report["keyframe_while_tracking_s"] > 0
    assert report["tracking_during_keyframe"]["frames"] >= 1 and report["tracking_alone"]["p50_ms"] > 0


class FakeGenerator:
    """Stands in for sam2's generator: returns one mask, or raises, after `delay_s`."""

    def __init__(self, delay_s: float = 0.2, fail: bool = False):
        self.delay_s, self.fail = delay_s, fail

    def generate(self, image):
        import time

        time.sleep(self.delay_s)
        if self.fail:
            raise RuntimeError("out of memory")
        return [candidate(np.ones(image.shape[:2], bool))]


def test_keyframe_search_runs_in_the_background_and_reports_once():
    import time
    from types import SimpleNamespace

    from rtseg.pipeline.auto_prompt import KeyframeSearch

    search = KeyframeSearch(SimpleNamespace(device=SimpleNamespace(type="cpu")),
                            AutoPromptConfig(mode="everything", interval_s=0.5))
    search._generator = FakeGenerator(delay_s=2.0)
    assert search.due(0.0)
    import torch  # noqa: F401 - loaded in a segmenter already; not part of what submit costs
    t0 = time.perf_counter()
    search.submit(7, np.zeros((6, 8, 3), np.uint8), [np.zeros((6, 8), bool)], now=100.0)
    assert time.perf_counter() - t0 < 0.5  # submit does not wait for the 2 s search
    assert not search.due(1000.0) and search.poll() is None  # running
    search.wait(30)
    found = search.poll()
    assert found.frame_index == 7 and len(found.candidates) == 1 and found.seconds >= 2.0
    assert search.poll() is None  # reported once
    assert not search.due(100.4) and search.due(100.5)  # interval_s from the last start
    search._generator = FakeGenerator(0.0, fail=True)
    search.submit(8, np.zeros((6, 8, 3), np.uint8), [], now=200.0)
    search.wait(30)
    with pytest.raises(RuntimeError, match="out of memory"):
        search.poll()
    assert search.due(200.5)

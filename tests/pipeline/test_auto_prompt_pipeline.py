"""Auto prompts through a real `rtseg run` (CPU, image_size 128, random weights with the
object score forced to 'visible': masks are meaningless, the path is real). Camera `det`
takes detector boxes (add_boxes), camera `all` runs SAM 2's automatic mask generator."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from rtseg.client import ControlError, Controller, Masks, Subscriber
from rtseg.pipeline.auto_prompt import mask_iou
from rtseg.protocol import PromptEvent
from tests.helpers.engine import write_test_checkpoint
from tests.helpers.pipeline import Collector, Pipeline, write_config

MAX_OBJECTS = 2
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_test_checkpoint(tmp_path_factory.mktemp("ckpt") / "test128.pt", 128)


def test_add_boxes_and_everything_mode(tmp_path, checkpoint):
    cameras = [
        {"id": "det", "source": "synthetic://160x120@4?objects=2&seed=1", "ring_slots": 32,
         "auto_prompt": {"mode": "boxes", "match_iou": 0.5, "max_objects": 3}},
        {"id": "all", "source": "synthetic://160x120@4?objects=2&seed=2", "ring_slots": 32,
         "auto_prompt": {"mode": "everything", "max_objects": MAX_OBJECTS, "interval_s": 1.0, "points_per_side": 4,
                         "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0, "min_area_px": 1,
                         "match_iou": 0.5}},
    ]
    config = write_config(tmp_path, checkpoint, policy="latest", cameras=cameras)
    with Pipeline(config) as pipe, Subscriber(pipe.pub, topics=("masks", "prompt")) as sub:
        pipe.wait_ready()
        seen = Collector(sub, pipe)
        wait, got = seen.wait, seen.got

        with Controller(pipe.control, timeout=30) as ctl:
            ctl.add_box("det", 1, [20, 20, 80, 80])
            first = wait(lambda m: isinstance(m, Masks) and m.camera == "det" and 1 in m.obj_ids)
            b1 = [float(v) for v in first.boxes[first.obj_ids.index(1)]]
            reply = ctl.request("add_boxes", camera="det", boxes=[b1, [100, 10, 150, 60], [101, 11, 150, 60]],
                                only_new=True)
            with pytest.raises(ControlError) as refused:  # only a camera in boxes mode takes them
                ctl.request("add_boxes", camera="all", boxes=[[1, 1, 20, 20]])
        assert [(b["status"], b["obj_id"]) for b in reply["boxes"]] == [("matched", 1), ("added", 2), ("matched", 2)]
        assert reply["added"] == [2] and reply["obj_ids"] == [1, 2] and reply["boxes"][0]["iou"] >= 0.99
        assert refused.value.field == "type" and "auto_prompt.mode" in refused.value.message
        wait(lambda m: isinstance(m, PromptEvent) and m.camera == "det" and m.op == "add_box" and m.obj_id == 2)
        # the example detector client: ground-truth boxes of the synthetic scene, only new ones added
        tool = subprocess.run([sys.executable, "-W", "error", "tools/feed_boxes.py", "--camera", "det", "--source",
                               cameras[0]["source"], "--pub", pipe.pub, "--control", pipe.control, "--times", "1",
                               "--every", "0"], capture_output=True, text=True, timeout=120, cwd=ROOT)
        assert tool.returncode == 0, tool.stdout + tool.stderr
        assert "box(es):" in tool.stdout and "objects now [1, 2" in tool.stdout, tool.stdout

        # everything: objects appear by themselves; never more than max_objects, never overlapping
        added = wait(lambda m: isinstance(m, PromptEvent) and m.camera == "all" and m.op == "add_mask")
        until = time.monotonic() + 8  # several more keyframes (interval_s 1)
        wait(lambda m: time.monotonic() > until and m not in got[:-1])
        events = [m for m in got if isinstance(m, PromptEvent) and m.camera == "all"]
        counts = [len(m.obj_ids) for m in got if isinstance(m, Masks) and m.camera == "all"]
    assert added.prompt["mask"]["size"] == [120, 160] and added.obj_id >= 1
    assert 1 <= max(counts) <= MAX_OBJECTS and len(events) <= MAX_OBJECTS
    from rtseg.protocol import decode_rle

    masks = [decode_rle(e.prompt["mask"]) for e in events]
    for i in range(len(masks)):
        for j in range(i):
            assert mask_iou(masks[i], masks[j]) < 0.5
    assert "keyframe" in pipe.output() and pipe.output().count("searched in") >= 2

"""The segmenter's object reporting, driven step by step with a real model (random weights,
image_size 128) and a scripted camera: clean masks change only what is published, and
long-lost objects are removed automatically when configured."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from rtseg.config import parse_config
from rtseg.engine import StreamingPredictor
from rtseg.engine.build import build_sam2_video_model
from rtseg.engine.models import model_spec
from rtseg.pipeline.prompt_log import PromptLog
from rtseg.pipeline.segmenter import Segmenter
from rtseg.protocol import MasksMessage, ObjectEvent, PromptEvent
from rtseg.sources import Frame
from tests.helpers.engine import make_clip, write_test_checkpoint

SIZE = 128


class ScriptedCamera:
    """A ring reader stand-in: the clip's frames, one second apart in capture time."""

    def __init__(self, frames):
        self.frames, self.i = frames, 0

    def latest(self, timeout_s):
        if self.i >= len(self.frames):
            return None
        img = self.frames[self.i]
        frame = Frame(img, "cam", self.i, (self.i + 1) * 10**9, 1_700_000_000 * 10**9 + self.i * 10**9,
                      img.shape[1], img.shape[0])
        self.i += 1
        return SimpleNamespace(frame=frame, missed=0)

    def source_state(self):
        return SimpleNamespace(status="connected", attempt=0)


class Collect:
    def __init__(self):
        self.sent = []

    def publish(self, msg):
        self.sent.append(msg)

    def publish_frame(self, *a, **k):
        pass

    def stats(self):
        return {}


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """The test checkpoint's model with the object-score bias set per test (`visible`)."""
    ckpt = write_test_checkpoint(tmp_path_factory.mktemp("ckpt") / "t.pt", SIZE)
    from rtseg.engine.checkpoints import load_into

    m = build_sam2_video_model(model_spec("sam2.1_hiera_t"), None, torch.device("cpu"), SIZE)
    load_into(m, ckpt, model_spec("sam2.1_hiera_t"))
    return m.eval()


def run(model, tmp_path, camera_yaml: str, frames, *, visible: bool = True):
    with torch.no_grad():
        model.sam_mask_decoder.pred_obj_score_head.layers[-1].bias.fill_(20.0 if visible else -20.0)
    cfg = parse_config(f"cameras:\n  - id: cam\n    source: 'synthetic://240x180@5'\n{camera_yaml}")
    pred = StreamingPredictor(model, history=4)
    pub = Collect()
    seg = Segmenter(cfg, {"cam": pred}, {"cam": ScriptedCamera(frames)}, PromptLog(tmp_path / "p.jsonl"), pub)
    seg.step()
    seg.apply_prompt("cam", 1, "box", {"box": [15, 25, 65, 75]}, None)
    while seg.step():
        pass
    masks = [m for m in pub.sent if isinstance(m, MasksMessage)]
    events = [m for m in pub.sent if isinstance(m, ObjectEvent)]
    return seg, pred, masks, events


def test_clean_masks_change_what_is_published_and_not_what_sam2_remembers(model, tmp_path):
    frames, _ = make_clip(4)
    _, raw_pred, raw, _ = run(model, tmp_path / "a", "", frames)
    _, clean_pred, cleaned, _ = run(model, tmp_path / "b", "    clean_masks: {open_px: 9, remove_islands_px: 400}\n",
                                    frames)
    # SAM 2's state is the same: the memory of the object and the logits it gives on the last frame
    assert raw_pred.obj_ids == clean_pred.obj_ids == [1]
    for name, a in raw_pred.memory.t._asdict().items():  # every slot tensor: memories, pointers, outputs
        assert torch.equal(a, getattr(clean_pred.memory.t, name)), name
    last = frames[-1]
    assert np.array_equal(raw_pred.track(last, logits=True).logits, clean_pred.track(last, logits=True).logits)
    # the published masks differ, and area / box follow the cleaned ones
    differ = 0
    for r, c in zip(raw, cleaned, strict=True):
        if not r.objects:
            continue
        ro, co = r.objects[0], c.objects[0]
        m = co.mask()
        assert co.area == m.sum()
        if m.any():
            ys, xs = np.nonzero(m)
            assert co.box == (xs.min(), ys.min(), xs.max() + 1.0, ys.max() + 1.0)
        differ += int(not np.array_equal(ro.mask(), m))
        assert "report" in c.latency_ms
    assert differ >= 1


def test_objects_lost_for_long_are_removed_when_configured(model, tmp_path):
    frames, _ = make_clip(5)
    lifecycle = ("    lifecycle: {occluded_after_frames: 2, visible_after_frames: 2, lost_after_s: 0.5, "
                 "remove_after_s: 0.5}\n")
    seg, pred, masks, events = run(model, tmp_path, lifecycle, frames, visible=False)
    kinds = [(e.event, e.frame_index) for e in events]
    # prompted after frame 0; frames 1 s apart, never visible: appears and starts hiding on frame 1,
    # occluded on frame 2 (2 hidden frames), lost on frame 3 (hidden for 2 s > 0.5), removed on frame 4
    assert kinds == [("appeared", 1), ("occluded", 2), ("lost", 3), ("removed", 4)], kinds
    assert pred.obj_ids == [] and seg.prompt_log.latest_prompts("cam") == []
    assert [o.state for m in masks for o in m.objects][-1] == "lost"
    gone = events[-1]
    assert gone.previous_state == "lost" and gone.state == "removed"
    removal = [m for m in seg.publisher.sent if isinstance(m, PromptEvent) and m.op == "remove"]
    assert [(m.obj_id, m.obj_ids) for m in removal] == [(1, ())]  # as if a client had sent remove


def test_auto_removal_is_off_by_default(model, tmp_path):
    frames, _ = make_clip(5)
    seg, pred, masks, events = run(model, tmp_path, "    lifecycle: {occluded_after_frames: 2, lost_after_s: 0.5}\n",
                                   frames, visible=False)
    assert [e.event for e in events] == ["appeared", "occluded", "lost"]
    assert pred.obj_ids == [1]

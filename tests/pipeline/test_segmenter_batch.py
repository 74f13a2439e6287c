"""segmenter.batch_cameras: the cameras with a frame ready are tracked through one image-encoder
batch, each with its own objects and masks, and a camera without a frame never holds them up.

Real Segmenter, predictors and messages; the rings are replaced by readers that hand out given
frames (or nothing) and record how long they were asked to wait."""
from __future__ import annotations

import time

import numpy as np
import torch

from rtseg.config import Config
from rtseg.engine import StreamingPredictor
from rtseg.engine.build import build_sam2_video_model
from rtseg.engine.models import model_spec
from rtseg.pipeline.prompt_log import PromptLog
from rtseg.pipeline.segmenter import Segmenter
from rtseg.protocol import MasksMessage, decode_rle
from rtseg.ring.layout import RingFrame
from rtseg.sources.base import Frame
from tests.helpers.engine import MODEL, make_clip


class ScriptedReader:
    """Hands out its frames one per read (None when out of frames); records each read's timeout."""

    def __init__(self, frames: list[np.ndarray]):
        self.frames = list(frames)
        self.waits: list[float] = []
        self.index = 0

    def latest(self, timeout_s: float):
        self.waits.append(timeout_s)
        if not self.frames:
            return None
        image = self.frames.pop(0)
        self.index += 1
        frame = Frame(image, "test", self.index, time.monotonic_ns(), time.time_ns(), image.shape[1], image.shape[0])
        return RingFrame(frame, self.index, 0, 0)


class Sink:
    def __init__(self):
        self.masks = []

    def publish(self, msg) -> bool:
        if isinstance(msg, MasksMessage):
            self.masks.append(msg)
        return True

    def publish_frame(self, *args, **kwargs) -> None:
        pass


def test_ready_cameras_batch_and_a_camera_without_frames_never_waits(tmp_path):
    torch.manual_seed(0)
    model = build_sam2_video_model(model_spec(MODEL), None, torch.device("cpu"), 64)
    with torch.no_grad():
        model.sam_mask_decoder.pred_obj_score_head.layers[-1].bias.fill_(20.0)
    frames = make_clip(2, 90, 120)[0]
    cfg = Config.model_validate({"cameras": [{"id": c, "source": "synthetic://"} for c in "abc"],
                                 "segmenter": {"batch_cameras": True, "batch_wait_s": 0, "max_batch": 3}})
    preds = {c: StreamingPredictor(model) for c in "abc"}
    encoded = []  # the batch size of every image-encoder pass
    forward_image = model.forward_image
    model.forward_image = lambda images: encoded.append(images.shape[0]) or forward_image(images)
    readers = {"a": ScriptedReader(frames), "b": ScriptedReader(frames[:1] * 2), "c": ScriptedReader([])}
    sink = Sink()
    seg = Segmenter(cfg, preds, readers, PromptLog(tmp_path / "prompts.jsonl"), sink)
    assert seg.step(timeout_s=0.5) == 2  # a and b together; c has nothing
    assert encoded == [2]
    preds["a"].add_prompt(1, points=[[40, 50]], labels=[1])
    preds["b"].add_prompt(2, box=[70, 40, 115, 80])
    assert seg.step(timeout_s=0.5) == 2
    got = [(m.camera, [o.obj_id for o in m.objects]) for m in sink.masks]
    assert got == [("a", []), ("b", []), ("a", [1]), ("b", [2])]
    masks = [decode_rle(m.objects[0].rle) for m in sink.masks[2:]]
    assert all(m.any() for m in masks)
    assert encoded == [2, 2]
    assert readers["c"].waits == [0.0, 0.0], "a camera without a frame must not be waited for"
    # each camera's masks are what its own predictor alone gives
    alone = StreamingPredictor(model)
    alone.track(frames[0])
    alone.add_prompt(1, points=[[40, 50]], labels=[1])
    np.testing.assert_array_equal(alone.track(frames[1]).masks[0], masks[0])


def test_camera_batch_is_the_devices_choice_unless_set():
    from rtseg.pipeline.segmenter import camera_batch

    cams = [{"id": "a", "source": "synthetic://"}]
    unset = Config.model_validate({"cameras": cams, "segmenter": {"batch_cameras": True}})
    assert camera_batch(unset, "cpu") == 1  # one frame per encoder pass: a batch is slower on a CPU
    assert camera_batch(unset, "cuda:0") == 8
    two = Config.model_validate({"cameras": cams, "segmenter": {"batch_cameras": True, "max_batch": 2}})
    assert camera_batch(two, "cpu") == 2 and camera_batch(two, "cuda:1") == 2

"""The streaming engine computes exactly what sam2's offline SAM2VideoPredictor computes.

CPU, float32, random weights with the object-score head forced to 'present' (see
engine_helpers), tiny model at image_size 256, a 42-frame clip: A is prompted with points at
frame 0, B with a box at frame 12 while A keeps tracking, C with a mask at frame 20, and D is
added at frame 8 and removed at frame 15. Each object's logits on every frame must equal those
of `propagate_in_video` run from that object's own prompt frame on the same preprocessed frames.
"""
from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest
import torch

from rtseg.engine import StreamingPredictor
from rtseg.engine.step import make_frame_step
from rtseg.engine.preprocess import Normalizer, as_rgb_tensor, resize_uint8
from tests.helpers.engine import MODEL, make_clip, write_test_checkpoint

N_FRAMES = 42
IMAGE_SIZE = 256
TOL = 1e-4  # DESIGN.md: float32 noise is ~5e-7; a pointer window of 8 instead of 16 shows as ~9e-4

PROMPTS = {  # obj_id -> (frame, kwargs for add_prompt)
    1: (0, dict(points=[[40, 50], [150, 150]], labels=[1, 0])),
    2: (12, dict(box=[146, 100, 202, 140])),
    3: (20, None),  # mask prompt: the ellipse's true mask at frame 20 (filled in below)
}
TRANSIENT = (4, 8, 15, dict(points=[[120, 100]], labels=[1]))  # obj, added at, removed at, prompt


def run_streaming(checkpoint, frames, gt, *, ptr_window: int | None = None) -> dict[int, dict[int, np.ndarray]]:
    """Logits per object per frame from the streaming predictor."""
    pred = StreamingPredictor.build(MODEL, checkpoint=checkpoint, device="cpu", image_size=IMAGE_SIZE)
    if ptr_window is not None:  # deliberately wrong memory, to prove the comparison can fail
        consts = dataclasses.replace(pred.consts, ptr_frames=ptr_window - 1)
        pred._frame_step = make_frame_step(pred.model, consts, "off", pred.device)
    logits: dict[int, dict[int, np.ndarray]] = {}
    t_obj, t_add, t_remove, t_prompt = TRANSIENT
    for i, frame in enumerate(frames):
        result = pred.track(frame, logits=True)
        for obj_id, (at, kwargs) in PROMPTS.items():
            if at == i:
                result = pred.add_prompt(obj_id, logits=True, **(kwargs or {"mask": gt[i][3]}))
        if i == t_add:
            result = pred.add_prompt(t_obj, logits=True, **t_prompt)
        if i == t_remove:
            pred.remove_object(t_obj)
        for k, obj_id in enumerate(result.obj_ids):
            logits.setdefault(obj_id, {})[i] = result.logits[k]
    return logits


def run_official(checkpoint, frames, gt, tmp_path) -> dict[int, dict[int, np.ndarray]]:
    """Logits per object per frame from sam2's own predictor, one object per inference state."""
    from sam2.build_sam import build_sam2_video_predictor

    official = build_sam2_video_predictor(
        "configs/sam2.1/sam2.1_hiera_t.yaml", ckpt_path=str(checkpoint), device="cpu",
        hydra_overrides_extra=[f"++model.image_size={IMAGE_SIZE}"],
    )
    official.fill_hole_area = 0  # on the CPU sam2 skips hole filling anyway (with a warning per frame)
    folder = tmp_path / "jpg"
    folder.mkdir()
    for i, f in enumerate(frames):
        cv2.imwrite(str(folder / f"{i}.jpg"), f[:, :, ::-1])
    norm = Normalizer(torch.device("cpu"))
    images = torch.cat([norm(resize_uint8(as_rgb_tensor(f, torch.device("cpu")), IMAGE_SIZE)) for f in frames])
    out: dict[int, dict[int, np.ndarray]] = {}
    for obj_id, (at, kwargs) in PROMPTS.items():
        state = official.init_state(str(folder))
        state["images"] = images  # the same preprocessed frames the streaming engine saw
        state["cached_features"] = {}
        if kwargs is None:
            official.add_new_mask(state, frame_idx=at, obj_id=obj_id, mask=gt[at][3])
        else:
            official.add_new_points_or_box(state, frame_idx=at, obj_id=obj_id, **kwargs)
        out[obj_id] = {
            f: masks[0, 0].numpy() for f, _, masks in official.propagate_in_video(state, start_frame_idx=at)
        }
    return out


@pytest.fixture(scope="module")
def clip():
    return make_clip(N_FRAMES)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_test_checkpoint(tmp_path_factory.mktemp("ckpt") / "test.pt", IMAGE_SIZE)


@pytest.fixture(scope="module")
def official_logits(checkpoint, clip, tmp_path_factory):
    frames, gt = clip
    return run_official(checkpoint, frames, gt, tmp_path_factory.mktemp("official"))


def compare(ours, ref) -> tuple[float, int]:
    """(max |Δlogit|, mask pixels that flip where both logits are clearly away from zero)."""
    diff = float(np.abs(ours - ref).max())
    decided = (np.abs(ours) >= TOL) & (np.abs(ref) >= TOL)
    flips = int(((ours > 0) != (ref > 0))[decided].sum())
    return diff, flips


def test_streaming_equals_official_propagation(checkpoint, clip, official_logits):
    frames, gt = clip
    ours = run_streaming(checkpoint, frames, gt)
    assert sorted(ours) == [1, 2, 3, 4]
    assert sorted(ours[4]) == list(range(8, 16)), "a removed object must stop producing masks"
    for obj_id, (at, _) in PROMPTS.items():
        ref = official_logits[obj_id]
        assert sorted(ours[obj_id]) == sorted(ref) == list(range(at, N_FRAMES))
        for f in ref:
            assert (ref[f] > 0).any(), f"reference mask of object {obj_id} empty at frame {f}: test is vacuous"
            assert ref[f].min() > -1000, "no-object logits (-1024): test checkpoint not applied"
            diff, flips = compare(ours[obj_id][f], ref[f])
            assert diff <= TOL, f"object {obj_id} frame {f}: max |Δlogit| {diff:.2e} > {TOL}"
            assert flips == 0, f"object {obj_id} frame {f}: {flips} mask pixels differ"


def test_comparison_detects_a_short_pointer_window(checkpoint, clip, official_logits):
    """The forks' 8-frame pointer window is measurably not SAM 2: this suite would catch it."""
    frames, gt = clip
    ours = run_streaming(checkpoint, frames, gt, ptr_window=8)
    worst = max(compare(ours[1][f], official_logits[1][f])[0] for f in official_logits[1])
    assert worst > TOL, f"a wrong memory window went unnoticed (max |Δlogit| {worst:.2e})"

"""Runs of the streaming engine and of sam2's official predictor on the same clip and prompts,
for the CUDA exactness tests (tests/engine/test_cuda.py; the CPU test, tests/engine/test_exactness.py,
runs a longer script of objects and cameras).

Hole filling is on on both sides: sam2's predictor fills holes only where its CUDA extension
loads, so `run_official` runs it inside `holes.official_predictor_fills_everywhere()`, which
makes it call rtseg's filling function (the extension itself where it loads) at exactly the
place it calls its own, after every `track_step`. Both sides then fill the same way.
"""
from __future__ import annotations

import contextlib
import dataclasses

import cv2
import numpy as np
import torch

from rtseg.engine import StreamingPredictor, holes
from rtseg.engine.preprocess import Normalizer, as_rgb_tensor, resize_uint8
from rtseg.engine.step import make_frame_step
from tests.helpers.engine import MODEL

N_FRAMES = 42
IMAGE_SIZE = 256

PROMPTS = {  # obj_id -> (frame, kwargs for add_prompt)
    1: (0, dict(points=[[40, 50], [150, 150]], labels=[1, 0])),
    2: (12, dict(box=[146, 100, 202, 140])),
    3: (20, None),  # mask prompt: the ellipse's true mask at frame 20 (filled in below)
}
TRANSIENT = (4, 8, 15, dict(points=[[120, 100]], labels=[1]))  # obj, added at, removed at, prompt


def run_streaming(checkpoint, frames, gt, *, ptr_window: int | None = None, device: str = "cpu",
                  precision: str = "fp32") -> dict[int, dict[int, np.ndarray]]:
    """Logits per object per frame from the streaming predictor."""
    pred = StreamingPredictor.build(MODEL, checkpoint=checkpoint, device=device, image_size=IMAGE_SIZE,
                                    precision=precision)
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


def run_official(checkpoint, frames, gt, tmp_path, device: str = "cpu",
                 precision=None) -> dict[int, dict[int, np.ndarray]]:
    """Logits per object per frame from sam2's own predictor, one object per inference state;
    under `precision`'s autocast (a rtseg.engine.precision.Precision) when given."""
    from sam2.build_sam import build_sam2_video_predictor

    official = build_sam2_video_predictor(
        "configs/sam2.1/sam2.1_hiera_t.yaml", ckpt_path=str(checkpoint), device=device,
        hydra_overrides_extra=[f"++model.image_size={IMAGE_SIZE}"],
    )
    assert official.fill_hole_area == 8  # sam2's default post-processing; filled here as on a GPU install (below)
    folder = tmp_path / "jpg"
    folder.mkdir()
    for i, f in enumerate(frames):
        cv2.imwrite(str(folder / f"{i}.jpg"), f[:, :, ::-1])
    dev = torch.device(device)
    norm = Normalizer(dev)
    images = torch.cat([norm(resize_uint8(as_rgb_tensor(f, dev), IMAGE_SIZE)) for f in frames])
    out: dict[int, dict[int, np.ndarray]] = {}
    with holes.official_predictor_fills_everywhere(), (precision.autocast() if precision else contextlib.nullcontext()):
        for obj_id, (at, kwargs) in PROMPTS.items():
            out[obj_id] = _official_object(official, folder, images, gt, obj_id, at, kwargs)
    return out


def _official_object(official, folder, images, gt, obj_id, at, kwargs) -> dict[int, np.ndarray]:
    state = official.init_state(str(folder))
    state["images"] = images  # the same preprocessed frames the streaming engine saw
    state["cached_features"] = {}
    if kwargs is None:
        official.add_new_mask(state, frame_idx=at, obj_id=obj_id, mask=gt[at][3])
    else:
        official.add_new_points_or_box(state, frame_idx=at, obj_id=obj_id, **kwargs)
    frames = official.propagate_in_video(state, start_frame_idx=at)
    return {f: masks[0, 0].float().cpu().numpy() for f, _, masks in frames}




def compare(ours, ref, tol: float) -> tuple[float, int]:
    """(max |Δlogit|, mask pixels that flip where both logits are clearly away from zero)."""
    diff = float(np.abs(ours - ref).max())
    decided = (np.abs(ours) >= tol) & (np.abs(ref) >= tol)
    flips = int(((ours > 0) != (ref > 0))[decided].sum())
    return diff, flips

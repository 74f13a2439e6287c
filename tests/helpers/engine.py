"""Shared test material for the engine: a deterministic clip and a test checkpoint.

Random weights make SAM 2's object-score head say "no object" and every logit -1024, so two
wrong implementations would compare equal. The test checkpoint sets the bias of that head's
last layer to +20: every frame then has real, non-trivial mask logits.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from rtseg.engine.build import build_sam2_video_model
from rtseg.engine.models import model_spec

MODEL = "sam2.1_hiera_t"


def make_clip(n: int, height: int = 180, width: int = 240, seed: int = 0):
    """n RGB frames of three moving shapes on texture, and each shape's mask per frame."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = (rng.random((height // 12 + 1, width // 12 + 1, 3)) * 255).astype(np.uint8)
    texture = np.kron(base, np.ones((12, 12, 1), np.uint8))[:height, :width]
    frames, masks = [], []
    for i in range(n):
        img = texture.copy()
        circle = (xx - (40 + 2.5 * i)) ** 2 + (yy - (50 + np.sin(i / 5) * 20)) ** 2 < 22**2
        rect = (np.abs(xx - (200 - 2 * i)) < 28) & (np.abs(yy - 120) < 18)
        ellipse = ((xx - 120) / 35.0) ** 2 + ((yy - (40 + 1.5 * i)) / 16.0) ** 2 < 1
        for m, color in ((circle, (230, 40, 40)), (rect, (40, 200, 60)), (ellipse, (50, 60, 220))):
            img[m] = color
        frames.append(img)
        masks.append({1: circle, 2: rect, 3: ellipse})
    return frames, masks


def write_test_checkpoint(path: Path, image_size: int = 256, seed: int = 0) -> Path:
    """An official-format checkpoint ({'model': state_dict}) of random weights whose
    object-score head always says 'object present'."""
    torch.manual_seed(seed)
    model = build_sam2_video_model(model_spec(MODEL), None, torch.device("cpu"), image_size)
    with torch.no_grad():
        model.sam_mask_decoder.pred_obj_score_head.layers[-1].bias.fill_(20.0)
    torch.save({"model": model.state_dict()}, path)
    return path


def assert_results_consistent(result) -> None:
    """A FrameResult's masks, boxes and logits agree (the packed copy was read back right):
    masks == logits > 0, and each box is its mask's extent (zeros for an empty mask)."""
    assert np.array_equal(result.masks, result.logits > 0)
    for mask, box in zip(result.masks, result.boxes):
        ys, xs = np.nonzero(mask)
        expected = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] if xs.size else [0, 0, 0, 0]
        assert box.tolist() == expected

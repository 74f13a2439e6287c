"""Preprocessing (resize + normalize, runnable on the GPU) against sam2.utils.misc's loader.

Stated tolerance: the resized image is within one grey level of PIL's in every pixel (so the
normalized input differs by at most 1/255/std ~ 0.0175), and at most 0.1% of values differ at
all (measured: about 0.001% to 0.006%, from PIL's fixed-point filter coefficients).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from sam2.utils.misc import _load_img_as_tensor

from rtseg.engine.preprocess import IMG_MEAN, IMG_STD, Normalizer, as_rgb_tensor, resize_uint8
from tests.helpers.engine import make_clip


def sam2_preprocessed(path, image_size: int) -> torch.Tensor:
    """What load_video_frames_from_jpg_images feeds the model for this image file."""
    img, _, _ = _load_img_as_tensor(str(path), image_size)
    mean = torch.tensor(IMG_MEAN, dtype=torch.float32)[:, None, None]
    std = torch.tensor(IMG_STD, dtype=torch.float32)[:, None, None]
    return ((img.float() - mean) / std).unsqueeze(0)


@pytest.mark.parametrize("size_hw", [(180, 240), (720, 1280), (97, 131)])
@pytest.mark.parametrize("image_size", [256, 1024])
def test_preprocessing_matches_sam2_loader(tmp_path, size_hw, image_size):
    h, w = size_hw
    frame = make_clip(1, h, w, seed=3)[0][0]
    frame = np.ascontiguousarray(frame)
    noise = np.random.default_rng(1).integers(0, 40, frame.shape, dtype=np.uint8)
    frame = frame // 2 + noise  # fine detail, so the resize kernel matters
    path = tmp_path / "f.png"  # lossless: the loader sees exactly our pixels
    Image.fromarray(frame).save(path)

    ref = sam2_preprocessed(path, image_size)
    ours = Normalizer(torch.device("cpu"))(resize_uint8(as_rgb_tensor(frame, torch.device("cpu")), image_size))
    assert ours.shape == ref.shape == (1, 3, image_size, image_size)
    one_level = 1 / 255 / min(IMG_STD)
    diff = (ours - ref).abs()
    assert float(diff.max()) <= one_level + 1e-5
    assert float((diff > 1e-5).float().mean()) <= 1e-3


def test_rejects_frames_that_are_not_rgb_uint8():
    for bad in (np.zeros((10, 10), np.uint8), np.zeros((10, 10, 3), np.float32), np.zeros((10, 10, 4), np.uint8)):
        with pytest.raises(ValueError, match="HxWx3 uint8"):
            as_rgb_tensor(bad, torch.device("cpu"))

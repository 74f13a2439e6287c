"""Frame preprocessing exactly as SAM 2's loaders do it, on any device.

sam2.utils.misc resizes with PIL (bicubic, antialiased, rounded back to uint8), scales to
[0, 1] and normalizes with ImageNet mean/std. Here the same steps run in torch, so they can
run on the GPU: torch's antialiased bicubic uses PIL's kernel (a=-0.5); rounding to uint8
in PIL's order (horizontal pass, round, vertical pass, round) keeps the result within one
grey level of PIL's (tested in tests/test_engine_preprocess.py).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

IMG_MEAN = (0.485, 0.456, 0.406)
IMG_STD = (0.229, 0.224, 0.225)


def as_rgb_tensor(frame: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    """HxWx3 uint8 RGB (numpy or torch) -> 1x3xHxW uint8 tensor on `device`."""
    if isinstance(frame, np.ndarray):
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(
                f"frame must be an HxWx3 uint8 RGB array, got dtype={frame.dtype} shape={frame.shape}"
            )
        t = torch.from_numpy(np.ascontiguousarray(frame))
    elif isinstance(frame, torch.Tensor):
        if frame.dtype != torch.uint8 or frame.dim() != 3 or frame.shape[2] != 3:
            raise ValueError(
                f"frame must be an HxWx3 uint8 RGB tensor, got dtype={frame.dtype} shape={tuple(frame.shape)}"
            )
        t = frame
    else:
        raise ValueError(f"frame must be a numpy array or torch tensor, got {type(frame).__name__}")
    if t.shape[0] < 2 or t.shape[1] < 2:
        raise ValueError(f"frame too small: {tuple(t.shape[:2])}")
    return t.to(device, non_blocking=True).permute(2, 0, 1).unsqueeze(0)


def resize_uint8(rgb: torch.Tensor, image_size: int) -> torch.Tensor:
    """1x3xHxW uint8 -> 3xSxS uint8, resized the way PIL's Image.resize((S, S)) does."""
    # PIL resamples horizontally, rounds to uint8, then vertically: do the same two passes.
    x = rgb.float()
    h, w = x.shape[-2:]
    if w != image_size:
        x = F.interpolate(x, size=(h, image_size), mode="bicubic", antialias=True, align_corners=False)
        x = x.round_().clamp_(0, 255)
    if h != image_size:
        x = F.interpolate(x, size=(image_size, image_size), mode="bicubic", antialias=True, align_corners=False)
        x = x.round_().clamp_(0, 255)
    return x.to(torch.uint8)[0]


class Normalizer:
    """uint8 3xSxS -> normalized float32 1x3xSxS, with mean/std kept on the device."""

    def __init__(self, device: torch.device):
        self.mean = torch.tensor(IMG_MEAN, dtype=torch.float32, device=device)[:, None, None]
        self.std = torch.tensor(IMG_STD, dtype=torch.float32, device=device)[:, None, None]

    def __call__(self, image_u8: torch.Tensor) -> torch.Tensor:
        x = image_u8.float() / 255.0
        x -= self.mean
        x /= self.std
        return x.unsqueeze(0)

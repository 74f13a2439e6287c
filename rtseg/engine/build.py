"""Building SAM 2 through sam2's own Hydra configs (never re-initialising Hydra here)."""
from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import torch

from rtseg.engine.checkpoints import load_into
from rtseg.engine.models import ModelSpec

log = logging.getLogger(__name__)


def resolve_device(device: str | torch.device) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} requested but CUDA is not available; use device 'cpu' or 'auto'")
    return dev


def hole_filling_available() -> bool:
    """sam2 fills small mask holes with its CUDA extension; without it sam2 warns every frame."""
    return importlib.util.find_spec("sam2._C") is not None


def build_sam2_video_model(spec: ModelSpec, checkpoint: Path | None, device: torch.device, image_size: int | None):
    """The official SAM2VideoPredictor model (same post-processing settings), weights loaded."""
    from sam2.build_sam import build_sam2_video_predictor

    overrides = [f"++model.image_size={int(image_size)}"] if image_size else []
    model = build_sam2_video_predictor(spec.hydra_config, ckpt_path=None, device="cpu", hydra_overrides_extra=overrides)
    if checkpoint is None:
        log.warning(
            "model %s built with RANDOM weights: masks are meaningless (tests and timing only)", spec.name
        )
    else:
        load_into(model, Path(checkpoint), spec)
    if model.fill_hole_area > 0 and not (device.type == "cuda" and hole_filling_available()):
        # sam2 itself skips hole filling here (with a warning per frame): do the same, once, quietly.
        log.info("mask hole filling off (needs sam2's CUDA extension on a GPU); masks may keep holes <= %d px",
                 model.fill_hole_area)
        model.fill_hole_area = 0
    return model.to(device).eval()

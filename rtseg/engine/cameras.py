"""Several cameras' frames through the image encoder as one batch.

Each camera keeps its own StreamingPredictor (its own objects, memory and frame count); the
predictors share one model. `track_cameras` takes the frames that are ready now, runs sam2's
image encoder once on all of them (on a GPU; on the CPU one at a time, which is faster there),
and then each camera's per-frame step on its slice of the features, so a camera's masks are
what its predictor's own `track` would give (float32 noise of a batched convolution, ~1e-6).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from rtseg.engine.predictor import FrameResult, StreamingPredictor, auto_chunk, prepare_features


def track_cameras(items: Sequence[tuple[StreamingPredictor, np.ndarray | torch.Tensor]], *,
                  logits: bool = False, encoder_batch: int | None = None) -> list[FrameResult]:
    """`predictor.track(frame)` for every (predictor, frame) pair, the frames through the image
    encoder `encoder_batch` at a time (None: the device's choice, `auto_chunk`: all of them in
    one pass on a GPU, one at a time on the CPU)."""
    if not items:
        return []
    first = items[0][0]
    if any(pred.model is not first.model for pred, _ in items):
        raise ValueError("track_cameras: the predictors must share one model")
    if len({id(pred) for pred, _ in items}) != len(items):
        raise ValueError("track_cameras: one frame per predictor")
    if encoder_batch is not None and encoder_batch < 1:
        raise ValueError(f"track_cameras: encoder_batch must be >= 1, got {encoder_batch}")
    size = encoder_batch or auto_chunk(first.device) or len(items)
    with first._inference():
        frames = [pred._hold(frame) for pred, frame in items]
        results = []
        for a in range(0, len(items), size):
            part = list(zip(items[a:a + size], frames[a:a + size]))
            images = torch.cat([pred._normalize(pred._frames[t].image) for (pred, _), t in part])
            backbone = first.model.forward_image(images)
            for i, ((pred, _), t) in enumerate(part):
                feats = prepare_features(pred.model, _batch_item(backbone, i))
                pred._features = (t, feats)
                results.append(pred._track_features(t, feats, logits))
        return results


def _batch_item(backbone_out: dict, i: int) -> dict:
    """Camera i's part of a batched backbone output (batch-1 tensors, as forward_image gives them)."""
    return {key: [x[i:i + 1] for x in value] if isinstance(value, list) else value[i:i + 1]
            for key, value in backbone_out.items()}

#!/usr/bin/env python
"""Compare rtseg's per-frame step compiled by inductor (`engine.compile: default`) with the eager one.

Tiny model, random weights with the object-score head forced to "present", two objects (a click
and a box), a few frames of the test clip; prints the compile time and the largest logit
difference, and checks the compiled masks and boxes (bit-packed on the device) against the logits. The unit tests check the compiled graph through AOTAutograd; inductor's code
generation takes minutes on a small CPU, so it is checked here. Example:

    python tools/check_compiled_step.py --image-size 64 --frames 8
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch

from rtseg.engine import StreamingPredictor
from rtseg.engine.build import build_sam2_video_model
from rtseg.engine.models import model_spec
from rtseg.sources.synthetic import SyntheticScene


def read_back_errors(r) -> int:
    """Objects of a result whose masks are not `logits > 0` or whose box is not its mask's extent."""
    bad = 0
    for mask, box, logit in zip(r.masks, r.boxes, r.logits):
        ys, xs = np.nonzero(mask)
        extent = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] if xs.size else [0, 0, 0, 0]
        bad += int(not np.array_equal(mask, logit > 0) or box.tolist() != extent)
    return bad


def run(pred: StreamingPredictor, frames: list[np.ndarray]) -> tuple[list[np.ndarray], list[float], int]:
    logits, seconds, bad = [], [], 0
    for i, frame in enumerate(frames):
        t0 = time.perf_counter()
        r = pred.track(frame, logits=True)
        seconds.append(time.perf_counter() - t0)
        if i == 0:
            r = pred.add_prompt(1, points=[[40, 50]], labels=[1], logits=True)
        if i == 2:
            r = pred.add_prompt(2, box=[70, 40, 115, 80], logits=True)
        logits.append(r.logits)
        bad += read_back_errors(r)
    return logits, seconds, bad


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    model = build_sam2_video_model(model_spec("sam2.1_hiera_t"), None, torch.device(args.device), args.image_size)
    with torch.no_grad():
        model.sam_mask_decoder.pred_obj_score_head.layers[-1].bias.fill_(20.0)
    scene = SyntheticScene(120, 90, objects=2, seed=0)
    frames = [scene.render(i)[0] for i in range(args.frames)]
    eager, _, _ = run(StreamingPredictor(model, objects=2, prompts=2), frames)
    compiled, seconds, bad = run(StreamingPredictor(model, compile="default", objects=2, prompts=2), frames)
    worst = max(float(np.abs(c - e).max()) for c, e in zip(compiled, eager))
    print(f"first compiled frame (compiles the step): {seconds[1]:.1f} s; later frames: "
          f"{np.median(seconds[2:]):.3f} s median")
    print(f"compiled vs eager over {args.frames} frames, 2 objects: max |delta logit| {worst:.2e}")
    print(f"compiled masks and boxes read back: {bad} object-frames disagree with the logits")
    return 0 if worst <= 1e-4 and bad == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

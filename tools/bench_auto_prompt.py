#!/usr/bin/env python3
"""What an `everything` keyframe costs, and what tracking latency does while one runs.

Tracks a synthetic camera with a StreamingPredictor (prompted objects from the scene's ground
truth), then: (1) per-frame tracking latency with no keyframe; (2) the automatic mask
generator alone on one frame; (3) tracking latency while the generator runs in the background
thread (rtseg.pipeline.auto_prompt.KeyframeSearch, as the segmenter runs it), and how long the
keyframe takes then; (4) tracking alone again (a shared machine's load changes meanwhile). Random weights unless --checkpoint (timing only: masks are meaningless).

    python tools/bench_auto_prompt.py --image-size 256 --points-per-side 8
    python tools/bench_auto_prompt.py --image-size 1024 --device cuda --points-per-side 32
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from rtseg.config import AutoPromptConfig
from rtseg.engine import StreamingPredictor
from rtseg.pipeline.auto_prompt import KeyframeSearch, build_generator
from rtseg.sources.synthetic import SyntheticScene


def stats(ms: list[float]) -> dict:
    a = np.asarray(ms, float)
    return {"frames": int(a.size), "p50_ms": round(float(np.percentile(a, 50)), 1),
            "p99_ms": round(float(np.percentile(a, 99)), 1), "max_ms": round(float(a.max()), 1)} if a.size else {}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="sam2.1_hiera_t")
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--image-size", type=int, default=256)
    ap.add_argument("--size", default="640x480", help="camera frame size WIDTHxHEIGHT")
    ap.add_argument("--objects", type=int, default=2, help="objects tracked meanwhile")
    ap.add_argument("--points-per-side", type=int, default=8)
    ap.add_argument("--points-per-batch", type=int, default=64)
    ap.add_argument("--baseline-frames", type=int, default=10)
    args = ap.parse_args(argv)
    w, h = (int(v) for v in args.size.split("x"))
    scene = SyntheticScene(w, h, max(args.objects, 1), seed=0)
    pred = StreamingPredictor.build(args.model, args.checkpoint, args.device, args.image_size)
    cfg = AutoPromptConfig(mode="everything", points_per_side=args.points_per_side,
                           points_per_batch=args.points_per_batch)
    index = 0

    def track() -> float:
        nonlocal index
        t0 = time.perf_counter()
        pred.track(scene.render(index)[0])
        if pred.device.type == "cuda":
            torch.cuda.synchronize()
        index += 1
        return (time.perf_counter() - t0) * 1e3

    track()
    for obj_id, mask in list(scene.masks(0).items())[:args.objects]:
        ys, xs = np.nonzero(mask)
        pred.add_prompt(obj_id, box=[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    for _ in range(3):
        track()  # warm-up
    baseline = [track() for _ in range(args.baseline_frames)]

    image = scene.render(index)[0]
    gen = build_generator(pred.model, cfg)
    with torch.inference_mode():
        gen.generate(image)  # warm-up
        t0 = time.perf_counter()
        masks = gen.generate(image)
        alone_s = time.perf_counter() - t0

    search = KeyframeSearch(pred.model, cfg, "bench")
    search.submit(index, image, [], time.monotonic())
    during, found = [], None
    while found is None:
        during.append(track())
        found = search.poll()
    search.close()
    after = [track() for _ in range(args.baseline_frames)]  # the machine may have changed meanwhile
    print(json.dumps({
        "model": args.model, "image_size": pred.image_size, "device": str(pred.device), "frame": f"{w}x{h}",
        "objects": len(pred.obj_ids), "points_per_side": args.points_per_side,
        "tracking_alone": stats(baseline),
        "keyframe_alone_s": round(alone_s, 3), "keyframe_masks": len(masks),
        "keyframe_while_tracking_s": round(found.seconds, 3),
        "tracking_during_keyframe": stats(during),
        "tracking_after": stats(after),
    }, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

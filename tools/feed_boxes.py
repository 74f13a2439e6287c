#!/usr/bin/env python3
"""An example "detector" client for `auto_prompt.mode: boxes`: it sends boxes with the
`add_boxes` control request (`only_new: true`) and prints which became new objects.

No detector weights can be downloaded here, so its "detector" is the synthetic camera's own
ground truth: for the frame the segmenter just published, it renders the same scene
(same synthetic:// URL) and boxes every visible object. Swap `detect()` for a real detector
(YOLO, ...) returning [[x0, y0, x1, y1], ...] in source pixels and nothing else changes.

    rtseg run configs/demo-cpu.yaml       # a camera with auto_prompt: {mode: boxes}
    python tools/feed_boxes.py --camera demo --source "synthetic://640x480@30?objects=3&seed=0" --every 2
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from rtseg.client import ControlError, Controller, Masks, Subscriber
from rtseg.protocol import DEFAULT_CONTROL, DEFAULT_PUB
from rtseg.sources.synthetic import SyntheticSource


def ground_truth_detector(url: str):
    """A detector that knows the synthetic scene: frame index -> boxes of the visible objects."""
    scene = SyntheticSource(url).scene

    def detect(frame_index: int) -> list[list[float]]:
        boxes = []
        for mask in scene.masks(frame_index).values():
            ys, xs = np.nonzero(mask)
            if xs.size >= 20:  # too small to be worth an object
                boxes.append([float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)])
        return boxes

    return detect


def latest_frame(sub: Subscriber, camera: str, timeout_s: float) -> int | None:
    """The frame index of the newest masks message of `camera` (waits up to timeout_s for one)."""
    newest = None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        m = sub.recv(timeout=0.05 if newest is not None else max(0.05, deadline - time.monotonic()))
        if m is None:
            if newest is not None:
                return newest
            continue
        if isinstance(m, Masks) and m.camera == camera:
            newest = m.frame_index
    return newest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--camera", required=True)
    ap.add_argument("--source", required=True, help="the camera's synthetic:// URL (the detector renders it)")
    ap.add_argument("--pub", default=DEFAULT_PUB)
    ap.add_argument("--control", default=DEFAULT_CONTROL)
    ap.add_argument("--every", type=float, default=2.0, help="seconds between detections")
    ap.add_argument("--times", type=int, default=0, help="stop after this many detections (0: run until Ctrl-C)")
    args = ap.parse_args(argv)
    detect = ground_truth_detector(args.source)
    sent = 0
    with Subscriber(args.pub, cameras=[args.camera]) as sub, Controller(args.control, timeout=30) as ctl:
        try:
            while not args.times or sent < args.times:
                index = latest_frame(sub, args.camera, timeout_s=30)
                if index is None:
                    print(f"no masks from camera {args.camera!r} on {args.pub} yet")
                    continue
                boxes = detect(index)
                if not boxes:
                    continue
                try:
                    reply = ctl.request("add_boxes", camera=args.camera, boxes=boxes, only_new=True,
                                        frame_index=index)
                except ControlError as e:
                    print(f"refused: {e}")
                    return 1
                sent += 1
                fates = ", ".join(f"{b['status']} {b['obj_id']}" for b in reply["boxes"])
                print(f"frame {reply['frame_index']} ({reply['applied_to']}): {len(boxes)} box(es): {fates}; "
                      f"objects now {reply['obj_ids']}", flush=True)
                time.sleep(args.every)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Cost of mask clean-up (clean_masks) and zone checks per frame at 1080p, on this machine.

    python tools/bench_cleanup.py            # realistic masks: 3 objects with a few islands/holes
    python tools/bench_cleanup.py --worst    # plus speckle over the whole frame (boxes = frame)
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from rtseg.config import CleanMasksConfig, ZoneConfig
from rtseg.pipeline.cleanup import box_of, clean_masks
from rtseg.pipeline.zones import ZoneTracker


def make_masks(worst: bool, h: int = 1080, w: int = 1920) -> np.ndarray:
    rng = np.random.default_rng(0)
    yy, xx = np.ogrid[:h, :w]
    masks = np.zeros((3, h, w), bool)
    for k, (x, y, r) in enumerate([(400, 500, 150), (1000, 400, 250), (1500, 700, 100)]):
        m = (xx - x) ** 2 + (yy - y) ** 2 < r * r
        for _ in range(6):  # islands beside the object and holes inside it
            cx, cy = x + int(rng.integers(-r, r)), y + int(rng.integers(-r, r))
            m[cy:cy + 4, cx:cx + 5] ^= True
        if worst:
            m ^= rng.random((h, w)) < 0.001
        masks[k] = m
    return masks


def timed(fn, n: int = 10) -> float:
    fn()
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worst", action="store_true")
    args = ap.parse_args()
    masks = make_masks(args.worst)
    boxes = np.asarray([box_of(m) for m in masks], np.float32)
    for kw in ({"remove_islands_px": 50, "fill_holes_px": 50}, {"open_px": 5, "close_px": 5},
               {"remove_islands_px": 50, "fill_holes_px": 50, "open_px": 5, "close_px": 5}):
        cfg = CleanMasksConfig(**kw)
        ms = timed(lambda cfg=cfg: clean_masks(masks, boxes, cfg))
        print(f"clean_masks {kw}: {ms:.1f} ms/frame (3 objects, 1080p)")
    zones = ZoneTracker([ZoneConfig(name="a", polygon=[(0, 0), (960, 0), (960, 1080), (0, 1080)]),
                         ZoneConfig(name="b", polygon=[(900, 100), (1800, 200), (1500, 1000)])])
    print(f"zones (2 zones, 3 objects): "
          f"{timed(lambda: zones.update(0, 0, [1, 2, 3], masks, [1.0] * 3, boxes)):.1f} ms/frame")


if __name__ == "__main__":
    main()

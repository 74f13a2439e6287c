#!/usr/bin/env python
"""Benchmark of the shared-memory ring: frames per second and write-to-read latency.

For each frame size and reader count, the writer (this process) writes frames into a
`RingWriter` and 1..N readers, each in its own spawned process, take them with
`RingReader.next()`. Latency is, per frame and reader, the time from just before
`write()` is called to the moment the reader holds its private copy (`time.monotonic_ns`
is one clock for all processes); it includes both copies (writer into the slot, reader out).

Two runs per case:
  paced  the writer writes at --fps like a camera: handoff latency p50/p99
  flood  the writer writes as fast as it can: its frames/s, what each reader gets, latency
Frames written in the first --warmup seconds (first mappings, first allocations) are not counted.

    .venv/bin/python tools/bench_ring.py                      # 640x480, 1080p, 4K x 1 and 3 readers
    .venv/bin/python tools/bench_ring.py --sizes 1920x1080 --readers 3 --seconds 5
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from rtseg.ring import RingReader, RingWriter, unlink_ring  # noqa: E402
from rtseg.sources import Frame  # noqa: E402


def _reader(name: str, ready: mp.Event, stop: mp.Event, out: mp.Queue) -> None:
    reader = RingReader(name, wait_s=10)
    reader.latest(timeout_s=10)  # the warm-up frame: maps the pixels, not timed
    ready.set()
    written_ns, done_ns, missed = [], [], []
    while not stop.is_set():
        rf = reader.next(timeout_s=0.2)
        if rf is None:
            continue
        done_ns.append(time.monotonic_ns())
        written_ns.append(rf.frame.t_mono_ns)
        missed.append(rf.missed)
    out.put({"written_ns": written_ns, "done_ns": done_ns, "missed": missed})
    reader.close()


def _run(size: tuple[int, int], readers: int, seconds: float, fps: float | None, slots: int, warmup: float) -> dict:
    w, h = size
    name = f"bench-{os.getpid()}"
    unlink_ring(name)
    ctx = mp.get_context("spawn")
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(4)]
    stop, out = ctx.Event(), ctx.Queue()
    with RingWriter(name, slots=slots, source_id="bench") as writer:
        writer.write(Frame.now(images[0], "bench", 0))  # the readers map the pixels before timing starts
        procs = []
        for _ in range(readers):
            ready = ctx.Event()
            p = ctx.Process(target=_reader, args=(name, ready, stop, out), daemon=True)
            p.start()
            procs.append((p, ready))
        for _, ready in procs:
            ready.wait(30)
        time.sleep(0.3)
        period = 1 / fps if fps else 0.0
        start = time.perf_counter()
        measure_from_ns = time.monotonic_ns() + int(warmup * 1e9)  # frames of the warm-up are not counted
        written = counted = 0
        next_due = start
        while (now := time.perf_counter()) - start < warmup + seconds:
            if period:
                if now < next_due:
                    time.sleep(next_due - now)
                next_due += period
            frame = Frame.now(images[written % 4], "bench", written)
            writer.write(frame)
            written += 1
            counted += frame.t_mono_ns >= measure_from_ns
        time.sleep(0.3)
        stop.set()
        results = [out.get(timeout=60) for _ in procs]
        for p, _ in procs:
            p.join(10)
    lat, per_reader, missed, got = [], [], 0, 0
    for r in results:
        w, d, m = (np.asarray(r[k], np.int64) for k in ("written_ns", "done_ns", "missed"))
        keep = w >= measure_from_ns
        lat.append((d[keep] - w[keep]) / 1e6)
        per_reader.append(int(keep.sum()) / seconds)
        missed, got = missed + int(m[keep].sum()), got + int(keep.sum())
    lat_ms = np.concatenate(lat)
    return {
        "write_fps": counted / seconds,
        "read_fps": statistics.mean(per_reader),
        "missed_pct": 100 * missed / max(1, missed + got),
        "p50_ms": float(np.percentile(lat_ms, 50)) if lat_ms.size else float("nan"),
        "p99_ms": float(np.percentile(lat_ms, 99)) if lat_ms.size else float("nan"),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="640x480,1920x1080,3840x2160", help="comma-separated WxH list")
    p.add_argument("--readers", default="1,3", help="comma-separated reader counts")
    p.add_argument("--seconds", type=float, default=3.0, help="seconds per run (default 3)")
    p.add_argument("--fps", type=float, default=60.0, help="writer rate of the paced run (default 60)")
    p.add_argument("--slots", type=int, default=8, help="ring slots (default 8, as CameraConfig)")
    p.add_argument("--warmup", type=float, default=0.5, help="seconds written before measuring (default 0.5)")
    args = p.parse_args(argv)
    sizes = [tuple(int(v) for v in s.lower().split("x")) for s in args.sizes.split(",")]
    counts = [int(n) for n in args.readers.split(",")]
    print(f"ring bench: {os.cpu_count()} CPUs, {args.slots} slots, {args.seconds:g} s per run after "
          f"{args.warmup:g} s warm-up, paced run at {args.fps:g} fps; latency = write() call -> reader holds its copy")
    print(f"{'size':>10} {'readers':>7} | {'paced p50':>9} {'p99':>7} | {'flood write/s':>13} "
          f"{'read/s/reader':>13} {'missed':>7} {'p50':>7} {'p99':>7}")
    for size in sizes:
        for n in counts:
            paced = _run(size, n, args.seconds, args.fps, args.slots, args.warmup)
            flood = _run(size, n, args.seconds, None, args.slots, args.warmup)
            print(f"{size[0]:>5}x{size[1]:<4} {n:>7} | {paced['p50_ms']:>6.2f} ms {paced['p99_ms']:>4.2f} ms | "
                  f"{flood['write_fps']:>13.0f} {flood['read_fps']:>13.0f} {flood['missed_pct']:>6.1f}% "
                  f"{flood['p50_ms']:>4.2f} ms {flood['p99_ms']:>4.2f} ms", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

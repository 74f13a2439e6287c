#!/usr/bin/env python
"""Benchmark of the viewer: can it decode and draw a 30 fps 1080p stream with 3 objects?

Two runs:
  render  one thread, as fast as it can, the whole per-frame path of the viewer: check and
          decode the 3 RLE masks, draw the overlay (tint, outline, label), hand the image to
          pyqtgraph and paint the window. Frames/s, and milliseconds per stage.
  stream  the real viewer (window, feed threads, ring, ZeroMQ) fed by a producer process that
          writes frames into a shared-memory ring at --fps and publishes their masks (each
          --mask-delay-ms after its frame, like a segmenter): frames shown per second, how
          many of them had their own masks, frames the viewer's ring reader missed.

Qt runs offscreen unless QT_QPA_PLATFORM or a display says otherwise (painting is done in
software either way).

    .venv/bin/python tools/bench_viewer.py                            # 1920x1080, 3 objects, both runs
    .venv/bin/python tools/bench_viewer.py --mode render --seconds 10
    .venv/bin/python tools/bench_viewer.py --size 1280x720 --fps 60
"""
from __future__ import annotations

import argparse
import dataclasses
import multiprocessing as mp
import os
import statistics
import sys
import time
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
if not (os.environ.get("QT_QPA_PLATFORM") or os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
    os.environ["QT_QPA_PLATFORM"] = "offscreen"

import numpy as np  # noqa: E402

from rtseg.protocol import MasksMessage  # noqa: E402
from rtseg.sources.synthetic import SyntheticScene  # noqa: E402

DISTINCT = 30  # distinct frames rendered up front, then cycled


def scene_frames(width: int, height: int, objects: int) -> list[tuple[np.ndarray, MasksMessage]]:
    """DISTINCT synthetic frames and their masks messages (as the segmenter would publish them)."""
    scene = SyntheticScene(width, height, objects, seed=0)
    out = []
    for i in range(DISTINCT):
        image, masks = scene.render(i * 3)
        ids = sorted(masks)
        stack = np.stack([masks[k] for k in ids])
        msg = MasksMessage.from_arrays("bench", i, obj_ids=ids, masks=stack, scores=[3.0] * len(ids),
                                       boxes=np.zeros((len(ids), 4)), capture_ns=0, capture_wall_ns=0, processed_ns=0)
        out.append((image, msg))
    return out


def _ms(values: list[float]) -> str:
    return f"{statistics.median(values):6.2f} ms (p99 {np.percentile(values, 99):6.2f})"


# --------------------------------------------------------------------------- render
def bench_render(width: int, height: int, objects: int, seconds: float) -> dict:
    from pyqtgraph.Qt import QtWidgets

    from rtseg.view.overlay import OverlayStyle, decode_objects, draw_overlay
    from rtseg.view.window import PromptViewBox

    import pyqtgraph as pg

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(["bench"])
    data = scene_frames(width, height, objects)
    view = pg.GraphicsView()
    box = PromptViewBox()
    view.setCentralItem(box)
    item = pg.ImageItem(axisOrder="row-major")
    box.addItem(item)
    view.resize(1280, 720)
    view.show()
    item.setImage(data[0][0], autoLevels=False, levels=None)  # uint8 RGB as is: the fast path
    box.setRange(xRange=(0, width), yRange=(0, height), padding=0)
    app.processEvents()
    style = OverlayStyle()
    t_decode, t_draw, t_qt = [], [], []
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        image, msg = data[n % DISTINCT]
        t0 = time.perf_counter()
        decoded, errors = decode_objects(msg.objects, msg.width, msg.height)
        assert not errors, errors
        t1 = time.perf_counter()
        composed = draw_overlay(image, decoded, style)
        t2 = time.perf_counter()
        item.setImage(composed, autoLevels=False, levels=None)  # uint8 RGB as is: the fast path
        view.viewport().repaint()
        t3 = time.perf_counter()
        t_decode.append((t1 - t0) * 1e3)
        t_draw.append((t2 - t1) * 1e3)
        t_qt.append((t3 - t2) * 1e3)
        n += 1
    elapsed = time.perf_counter() - start
    view.close()
    return {"frames": n, "fps": n / elapsed, "decode": t_decode, "draw": t_draw, "qt": t_qt}


# --------------------------------------------------------------------------- stream
def _producer(ring: str, endpoint_queue: mp.Queue, width: int, height: int, objects: int, fps: float,
              delay_ms: float, go: mp.Event, stop: mp.Event) -> None:
    from rtseg.pipeline.publisher import Publisher
    from rtseg.ring import RingWriter
    from rtseg.sources import Frame

    data = scene_frames(width, height, objects)
    with Publisher("tcp://127.0.0.1:*", hwm=100) as pub, RingWriter(ring, slots=8, source_id="bench") as writer:
        writer.set_status("connected", fps=fps)
        endpoint_queue.put(pub.endpoint)
        go.wait(30)
        pending: list[tuple[float, MasksMessage]] = []
        period, index, next_t = 1.0 / fps, 0, time.monotonic()
        while not stop.is_set():
            now = time.monotonic()
            if now >= next_t:
                image, msg = data[index % DISTINCT]
                frame = Frame.now(image, "bench", index)
                writer.write(frame)
                pending.append((now + delay_ms / 1e3, dataclasses.replace(
                    msg, frame_index=index, capture_ns=frame.t_mono_ns, capture_wall_ns=frame.t_wall_ns,
                    processed_ns=time.monotonic_ns())))
                index += 1
                next_t += period
            while pending and pending[0][0] <= now:
                pub.publish(pending.pop(0)[1])
            time.sleep(0.001)


def bench_stream(width: int, height: int, objects: int, fps: float, seconds: float, delay_ms: float) -> dict:
    from pyqtgraph.Qt import QtCore, QtWidgets

    from rtseg.view.viewer import ViewerOptions, build_viewer
    from rtseg.ring import unlink_ring

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(["bench"])
    ring = f"bench-view-{uuid.uuid4().hex[:8]}"
    ctx = mp.get_context("spawn")
    endpoints, go, stop = ctx.Queue(), ctx.Event(), ctx.Event()
    proc = ctx.Process(target=_producer, args=(ring, endpoints, width, height, objects, fps, delay_ms, go, stop),
                       daemon=True)
    proc.start()
    try:
        endpoint = endpoints.get(timeout=120)
        win = build_viewer(ViewerOptions("bench", endpoint, None, ring=ring, fps=max(fps, 30.0),
                                         frame_buffer=30))
        win.resize(1280, 800)
        win.show()
        go.set()
        warm = time.monotonic() + 1.0
        while time.monotonic() < warm:  # connect, first frames, first paints
            app.processEvents()
            time.sleep(0.002)
        shown0 = win.frames_shown
        stats0 = win.feed.stats()
        matched = 0
        last_serial = None if win.view is None else win.view.serial
        start = time.monotonic()
        while time.monotonic() - start < seconds:
            app.processEvents(QtCore.QEventLoop.ProcessEventsFlag.AllEvents, 5)
            view = win.view
            if view is not None and view.serial != last_serial:
                last_serial = view.serial
                matched += int(view.matched)
            time.sleep(0.001)
        elapsed = time.monotonic() - start
        stats = win.feed.stats()
        shown = win.frames_shown - shown0
        win.close()
        return {"shown_fps": shown / elapsed, "matched": matched, "shown": shown,
                "frames_fps": (stats.frames_received - stats0.frames_received) / elapsed,
                "masks_fps": (stats.masks_received - stats0.masks_received) / elapsed,
                "latency_ms": stats.latency_ms, "compose_ms": stats.compose_ms}
    finally:
        stop.set()
        proc.join(10)
        if proc.is_alive():
            proc.kill()
        unlink_ring(ring)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="1920x1080", help="frame WIDTHxHEIGHT (default 1920x1080)")
    parser.add_argument("--objects", type=int, default=3)
    parser.add_argument("--mode", choices=["render", "stream", "both"], default="both")
    parser.add_argument("--seconds", type=float, default=5.0, help="measuring time per run (default 5)")
    parser.add_argument("--fps", type=float, default=30.0, help="stream: the camera's rate (default 30)")
    parser.add_argument("--mask-delay-ms", type=float, default=40.0,
                        help="stream: masks published this long after their frame (default 40)")
    args = parser.parse_args()
    from rtseg.view.qtfix import guard_bool_refcounts

    guard_bool_refcounts()  # see rtseg/view/qtfix.py: without it PySide6 6.12.0 aborts this run
    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        parser.error(f"--size must be WIDTHxHEIGHT, got {args.size!r}")
    print(f"viewer bench: {width}x{height}, {args.objects} objects, {os.cpu_count()} CPUs, "
          f"Qt platform {os.environ.get('QT_QPA_PLATFORM', 'native')}")
    if args.mode in ("render", "both"):
        r = bench_render(width, height, args.objects, args.seconds)
        print(f"render: {r['fps']:7.1f} frames/s over {r['frames']} frames")
        print(f"  decode RLE {_ms(r['decode'])}   draw overlay {_ms(r['draw'])}   setImage+paint {_ms(r['qt'])}")
    if args.mode in ("stream", "both"):
        s = bench_stream(width, height, args.objects, args.fps, args.seconds, args.mask_delay_ms)
        kept = s["shown_fps"] >= 0.95 * args.fps
        print(f"stream at {args.fps:g} fps: shown {s['shown_fps']:5.1f} frames/s ({s['matched']} of {s['shown']} with "
              f"their own masks), ring frames {s['frames_fps']:5.1f}/s, masks {s['masks_fps']:5.1f}/s, "
              f"compose {s['compose_ms'] or 0:.1f} ms, capture->masks received {s['latency_ms'] or 0:.0f} ms: "
              f"{'keeps up' if kept else 'FALLS BEHIND'}")
    from rtseg.view.viewer import release_qt

    release_qt()
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""End-to-end pipeline benchmark: capture timestamp -> subscriber receipt, for a config.

Starts `rtseg run CONFIG` as a real subprocess (supervisor, capture, segmenter), prompts the
given objects once the first frame is there, subscribes to masks on the same host and reports
latency p50/p99 (capture monotonic ns -> receipt monotonic ns; both on this host's
CLOCK_MONOTONIC), throughput (masks messages/s), frames skipped by the `latest` policy, and
CPU use per process (psutil, averaged over the measured window).

    python tools/bench_pipeline.py configs/demo.yaml --weights random --seconds 30 --objects 2
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import yaml

from rtseg.client import ControlTimeout, Controller, Subscriber


def wait_ready(control: str, camera: str, timeout_s: float) -> tuple[int, int]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with Controller(control, timeout=2.0) as ctl:
                size = ctl.list()["cameras"][camera]["frame_size"]
                if size is not None:
                    return size
        except ControlTimeout:
            pass
        time.sleep(0.5)
    raise SystemExit(f"the pipeline did not come up within {timeout_s} s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config")
    ap.add_argument("--weights", choices=["checkpoint", "random"], default=None)
    ap.add_argument("--seconds", type=float, default=30.0, help="measured window after warm-up")
    ap.add_argument("--warmup", type=float, default=5.0)
    ap.add_argument("--objects", type=int, default=1, help="objects to prompt (boxes on a grid)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    cfg = yaml.safe_load(Path(args.config).read_text())
    camera = cfg["cameras"][0]["id"]
    net = {"pub": "tcp://127.0.0.1:5555", "control": "tcp://127.0.0.1:5556", **cfg.get("network", {})}
    state = Path(tempfile.mkdtemp(prefix="rtseg-bench-"))
    cfg.setdefault("supervisor", {})["state_dir"] = str(state)
    cfg_path = state / "config.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    cmd = [sys.executable, "-m", "rtseg.cli", "run", str(cfg_path)] + (["--weights", args.weights] if args.weights else [])
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(state / "run.log", "w"), start_new_session=True)
    try:
        h, w = wait_ready(net["control"], camera, 180)
        with Controller(net["control"], timeout=30) as ctl:
            for i in range(args.objects):
                x0 = (i % 4) * w / 4
                y0 = (i // 4 % 4) * h / 4
                ctl.add_box(camera, i + 1, [x0 + 2, y0 + 2, x0 + w / 4 - 2, y0 + h / 4 - 2])
        pids = json.loads((state / "processes.json").read_text())
        procs = {name: psutil.Process(pid) for name, pid in pids.items() if isinstance(pid, int) and name != "run_id"}
        with Subscriber(net["pub"], cameras=[camera]) as sub:
            end_warmup = time.monotonic() + args.warmup
            while time.monotonic() < end_warmup:
                sub.recv(timeout=0.5)
            for p in procs.values():
                p.cpu_percent(None)
            latencies, skipped0, skipped1, n = [], None, 0, 0
            t0 = time.monotonic()
            while time.monotonic() - t0 < args.seconds:
                m = sub.recv(timeout=1.0)
                if m is None:
                    continue
                latencies.append((m.received_ns - m.capture_ns) / 1e6)
                skipped0 = m.skipped_total if skipped0 is None else skipped0
                skipped1 = m.skipped_total
                n += 1
            span = time.monotonic() - t0
            cpu = {name: round(p.cpu_percent(None), 1) for name, p in procs.items()}
        lat = np.asarray(latencies) if latencies else np.zeros(1)
        result = {
            "config": args.config, "objects": args.objects, "frame_size": [w, h], "seconds": round(span, 1),
            "masks_per_s": round(n / span, 2), "latency_ms_p50": round(float(np.percentile(lat, 50)), 1),
            "latency_ms_p99": round(float(np.percentile(lat, 99)), 1),
            "skipped_frames": (skipped1 - skipped0) if skipped0 is not None else 0,
            "cpu_percent": cpu, "cores": os.cpu_count(),
        }
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    print(f"{'config':<24}{'objects':>8}{'masks/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'skipped':>9}  cpu % per process")
    print(f"{Path(args.config).name:<24}{result['objects']:>8}{result['masks_per_s']:>9}{result['latency_ms_p50']:>9}"
          f"{result['latency_ms_p99']:>9}{result['skipped_frames']:>9}  {result['cpu_percent']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Running a real `rtseg run` pipeline (supervisor, capture, segmenter processes) in tests."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import yaml

from rtseg.client import ControlTimeout, Controller
from tests.helpers.net import free_port


def write_config(folder: Path, checkpoint: Path | None, *, source: str = "synthetic://160x120@8?objects=2&seed=1",
                 policy: str = "every", extra: dict | None = None, cameras: list[dict] | None = None) -> Path:
    cfg = {
        "cameras": cameras or [{"id": "cam", "source": source, "ring_slots": 32}],
        "model": {"name": "sam2.1_hiera_t", "image_size": 128,
                  **({"checkpoint": str(checkpoint)} if checkpoint else {"weights": "random"})},
        "segmenter": {"frame_policy": policy, "recent_frames": 8},
        "network": {"pub": f"tcp://127.0.0.1:{free_port()}", "control": f"tcp://127.0.0.1:{free_port()}",
                    "status_interval_s": 0.5},
        "supervisor": {"state_dir": str(folder / "state"), "heartbeat_timeout_s": 20, "restart_budget": 3},
    }
    for key, value in (extra or {}).items():
        cfg.setdefault(key, {}).update(value)
    path = folder / "pipeline.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


class Pipeline:
    """`rtseg run CONFIG` as a real subprocess; `.pub` / `.control` endpoints; `.pids()`."""

    def __init__(self, config: Path, *args: str):
        self.config = config
        self.cfg = yaml.safe_load(config.read_text())
        self.pub = self.cfg["network"]["pub"]
        self.control = self.cfg["network"]["control"]
        self.state = Path(self.cfg["supervisor"]["state_dir"])
        self.log = open(config.parent / "run.log", "w")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen([sys.executable, "-m", "rtseg.cli", "run", str(config), *args],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=env, start_new_session=True)

    def pids(self) -> dict:
        path = self.state / "processes.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        """Until the segmenter answers `list` with the camera's frame size."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"rtseg run exited early:\n{self.output()}"
            try:
                with Controller(self.control, timeout=2.0) as ctl:
                    if all(c["frame_size"] is not None for c in ctl.list()["cameras"].values()):
                        return
            except ControlTimeout:
                pass
            time.sleep(0.5)
        raise AssertionError(f"pipeline not ready in {timeout_s} s:\n{self.output()}")

    def output(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return (self.config.parent / "run.log").read_text()[-6000:]

    def stop(self, timeout_s: float = 15.0) -> float:
        """SIGTERM the supervisor; returns seconds it took to exit."""
        t0 = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if not self.log.closed:
            self.log.close()
        return time.monotonic() - t0

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
        for pid in self.pids().values() if self.state.exists() else ():
            if isinstance(pid, int) and psutil.pid_exists(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


class Collector:
    """What a Subscriber received, kept in order: `wait(cond)` returns the first message
    (already received or arriving within timeout_s) for which cond(message) is true."""

    def __init__(self, sub, pipe: Pipeline | None = None):
        self.sub, self.pipe = sub, pipe
        self.got: list = []

    def wait(self, cond, timeout_s: float = 90.0):
        for m in self.got:
            if cond(m):
                return m
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            m = self.sub.recv(timeout=0.5)
            if m is not None:
                self.got.append(m)
                if cond(m):
                    return m
        seen = sorted({type(g).__name__ for g in self.got})
        raise AssertionError(f"not seen in {timeout_s} s (got {len(self.got)} messages: {seen})"
                             + (f":\n{self.pipe.output()}" if self.pipe is not None else ""))

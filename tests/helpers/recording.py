"""Synthetic messages, a publishing thread, recorder subprocesses and small file systems for
the recorder / export / replay tests."""
from __future__ import annotations

import contextlib
import functools
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from rtseg.protocol import FrameMessage, MasksMessage, ObjectEvent, PromptEvent, StatusMessage
from rtseg.pipeline.publisher import Publisher
from rtseg.recording import SegmentWriter
from rtseg.recording.store import new_segment_path
from tests.helpers.messages import masks_of

H, W = 48, 64


def masks_for(frame_index: int, camera: str = "cam", *, h: int = H, w: int = W, noise: bool = False) -> np.ndarray:
    """Two objects: a box moving right with the frame index, and a fixed box (1 and 7)."""
    masks = np.zeros((2, h, w), bool)
    x = frame_index % (w - 12)
    masks[0, 5:20, x:x + 12] = True
    masks[1, 25:40, 30:50] = True
    if noise:  # incompressible masks make big records (full-disk tests)
        masks[0] = np.random.default_rng(frame_index).random((h, w)) < 0.5
    return masks


def masks_message(frame_index: int, camera: str = "cam", *, h: int = H, w: int = W, noise: bool = False,
                  wall_ns: int | None = None) -> MasksMessage:
    masks = masks_for(frame_index, camera, h=h, w=w, noise=noise)
    now = time.monotonic_ns()
    return masks_of(camera, frame_index, {1: masks[0], 7: masks[1]}, scores=[3.5, -0.5 + frame_index % 2],
                    capture_ns=now - 5_000_000, capture_wall_ns=wall_ns or time.time_ns(), processed_ns=now,
                    latency_ms={"track": 4.0})


def frame_message(frame_index: int, camera: str = "cam", *, h: int = H, w: int = W,
                  wall_ns: int | None = None) -> FrameMessage:
    rgb = np.full((h, w, 3), 40, np.uint8)
    rgb[:, :, 2] = (frame_index * 7) % 256
    return FrameMessage.from_image(camera, frame_index, rgb, capture_ns=time.monotonic_ns() - 5_000_000,
                                   capture_wall_ns=wall_ns or time.time_ns(), quality=95)


def prompt_event(frame_index: int, camera: str = "cam") -> PromptEvent:
    return PromptEvent(camera, "add_points", 1, frame_index, frame_index, {"points": [[10, 10]], "labels": [1]},
                       (1, 7), time.time_ns())


def write_recording(folder: Path, frames: int, *, cameras=("cam",), with_frames: bool = False, segments: int = 1,
                    step_ns: int = 20_000_000, leave_part: bool = False) -> list:
    """A recording made in-process: `frames` masks per camera (plus JPEG frames and a prompt
    event), log times `step_ns` apart, split into `segments`; the last left as `.part` if asked.
    Returns the messages in the order written."""
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.time_ns() - frames * step_ns
    written = []
    per_segment = -(-frames // segments)
    writer = None
    for i in range(frames):
        if i % per_segment == 0:
            if writer is not None:
                writer.close()
            writer = SegmentWriter(new_segment_path(folder, t0 + i * step_ns), fsync_interval_s=3600)
        for cam in cameras:
            msgs = [masks_message(i, cam, wall_ns=t0 + i * step_ns)]
            if with_frames:
                msgs.append(frame_message(i, cam, wall_ns=t0 + i * step_ns))
            if i == 2:
                msgs.append(prompt_event(i, cam))
            for msg in msgs:
                writer.write_message(msg, log_time_ns=t0 + i * step_ns)
                written.append(msg)
    if not leave_part:
        writer.close()
    return written


class PublishingThread(threading.Thread):
    """A real Publisher in its own thread: masks at `rate_hz` (plus a status every 10 and a
    prompt event every 50; frames too when `frames`, an object event every 50 when `events`). `.endpoint` once `.ready` is set;
    `.pause()` / `.resume()`; `.last_index` is the last masks frame published."""

    def __init__(self, rate_hz: float = 100.0, *, frames: bool = False, noise: bool = False, h: int = H, w: int = W,
                 events: bool = False):
        super().__init__(daemon=True)
        self.rate_hz, self.frames, self.noise, self.h, self.w = rate_hz, frames, noise, h, w
        self.events = events  # also an object event (object 7 occluded) every 50 frames
        self.ready = threading.Event()
        self.stopped = threading.Event()
        self.paused = threading.Event()
        self.idle = threading.Event()
        self.last_index = -1
        self.endpoint = ""
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with Publisher("tcp://127.0.0.1:*", hwm=10_000) as pub:
                self.endpoint = pub.endpoint
                self.ready.set()
                i = 0
                next_t = time.monotonic()
                while not self.stopped.is_set():
                    if self.paused.is_set():
                        self.idle.set()
                        time.sleep(0.01)
                        next_t = time.monotonic()
                        continue
                    self.idle.clear()
                    wall_ns = time.time_ns()  # a frame and its masks share the capture time, as in the segmenter
                    pub.publish(masks_message(i, h=self.h, w=self.w, noise=self.noise, wall_ns=wall_ns))
                    if self.frames:
                        pub.publish(frame_message(i, h=self.h, w=self.w, wall_ns=wall_ns))
                    if i % 10 == 0:
                        pub.publish(StatusMessage(uptime_s=i / self.rate_hz, device="cpu"))
                    if i % 50 == 3:
                        pub.publish(prompt_event(i))
                    if self.events and i % 50 == 4:
                        pub.publish(ObjectEvent("cam", "occluded", 7, i, time.monotonic_ns(), wall_ns, "occluded",
                                                (1.0, 2.0, 30.0, 40.0), -0.5, previous_state="tracking",
                                                duration_s=1.5))
                    self.last_index = i
                    i += 1
                    next_t += 1 / self.rate_hz
                    time.sleep(max(0.0, next_t - time.monotonic()))
        except BaseException as e:  # surfaced by the test through .error
            self.error = e
            self.ready.set()

    def pause(self) -> None:
        self.paused.set()
        self.idle.wait(5)

    def resume(self) -> None:
        self.paused.clear()

    def stop(self) -> None:
        self.stopped.set()
        self.join(5)


@functools.lru_cache(maxsize=1)
def can_mount() -> bool:
    """Whether this process may mount a tmpfs (root in a container that allows it)."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    with tempfile.TemporaryDirectory() as probe:
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", probe], capture_output=True).returncode:
            return False
        subprocess.run(["umount", probe], check=False)
    return True


@contextlib.contextmanager
def tmpfs(path: Path, *options: str):
    """A tmpfs mounted at `path` with mount options (size=1m, ro), unmounted afterwards."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(("mode=0755",) + options), "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)

"""`rtseg replay` as a real process, watched by a real Subscriber."""
from __future__ import annotations

import signal
import time

import numpy as np

from rtseg.client import FrameImage, Masks, Subscriber
from rtseg.protocol import PromptEvent
from tests.helpers.procs import start_cli, stop_process
from tests.helpers.recording import masks_for, write_recording
from tests.helpers.net import free_port


def test_replay_republishes_every_message_at_the_recorded_pace(tmp_path):
    rec = tmp_path / "rec"
    written = write_recording(rec, 20, with_frames=True, segments=2, step_ns=30_000_000, leave_part=True)
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    got, times = [], []
    with Subscriber(endpoint, topics=("masks", "frame", "prompt")) as sub:
        proc = start_cli("replay", str(rec), "--pub", endpoint, "--speed", "2", "--wait", "1.0",
                         log=tmp_path / "replay.log")
        try:
            while len(got) < len(written):
                item = sub.recv(timeout=15)
                assert item is not None, f"only {len(got)} of {len(written)} messages arrived"
                got.append(item)
                times.append(time.monotonic())
            assert proc.wait(15) == 0
        finally:
            stop_process(proc)
    assert "replayed 41 message(s)" in (tmp_path / "replay.log").read_text()
    masks = [g for g in got if isinstance(g, Masks)]
    assert [m.frame_index for m in masks] == list(range(20))
    for m in masks:
        assert m.obj_ids == [1, 7] and np.array_equal(m.masks, masks_for(m.frame_index))
        original = written[[getattr(w, "frame_index", None) for w in written].index(m.frame_index)]
        assert m.capture_wall_ns == original.capture_wall_ns
        assert m.received_ns - m.capture_ns > 0  # monotonic times moved to this host's clock
    assert sum(isinstance(g, FrameImage) for g in got) == 20
    assert sum(isinstance(g, PromptEvent) for g in got) == 1
    span = times[-1] - times[0]
    assert 0.2 < span < 1.5, span  # 19 steps of 30 ms at 2x: 0.285 s


def test_replay_loops_until_stopped(tmp_path):
    rec = tmp_path / "rec"
    write_recording(rec, 5, step_ns=10_000_000)
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    with Subscriber(endpoint) as sub:
        proc = start_cli("replay", str(rec), "--pub", endpoint, "--loop", "--speed", "4", "--wait", "1.0",
                         log=tmp_path / "replay.log")
        try:
            indices = []
            while len(indices) < 15:
                item = sub.recv(timeout=15)
                assert item is not None
                indices.append(item.frame_index)
            assert proc.poll() is None
            assert stop_process(proc, signal.SIGINT) == 0
        finally:
            stop_process(proc)
    assert indices[:15] == [0, 1, 2, 3, 4] * 3

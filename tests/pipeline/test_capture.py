"""The capture process, for real: spawned processes, shared memory, a GStreamer RTSP server."""
from __future__ import annotations

import logging
import multiprocessing as mp
import os
import queue
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rtseg.pipeline.capture import CaptureProcess, backoff_delay, run_capture
from rtseg.config import CameraConfig, ReconnectConfig
from rtseg.ring import RingReader, ring_segments
from tests.helpers.rtsp_server import RtspServer, rtsp_server  # noqa: F401
from tests.helpers.net import free_port
from tests.helpers.procs import drain_queue

CTX = mp.get_context("spawn")
PASSWORD = "Sup3r-Secret!"


def camera(source: str, **kw: Any) -> CameraConfig:
    return CameraConfig(id="cam1", source=source, **kw)


def wait_for(events: Any, pred: Callable[[dict], bool], timeout_s: float, seen: list[dict]) -> dict:
    """Collect status events into `seen` until one matches pred."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            ev = events.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            break
        seen.append(ev)
        if pred(ev):
            return ev
    raise AssertionError(f"no matching status event within {timeout_s} s; got {[e['event'] for e in seen]}")


def test_backoff_is_exponential_and_capped() -> None:
    cfg = ReconnectConfig(initial_s=0.5, factor=2, max_s=3)
    assert [backoff_delay(cfg, n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_file_source_ends_with_a_marker_readers_see(ring: str) -> None:
    events = CTX.Queue()
    cam = camera("synthetic://96x64@60?frames=40&seed=3")
    with CaptureProcess(cam, ring, status_queue=events) as proc:
        reader = RingReader(ring, wait_s=15)
        indices = []
        while (got := reader.next(5)) is not None:
            indices.append(got.frame.index)
            assert got.frame.source_id == "cam1" and got.frame.image.shape == (64, 96, 3)
        assert reader.ended and reader.source_state().status == "ended"
        assert indices[-1] == 39 and indices == sorted(indices)
        seen: list[dict] = []
        wait_for(events, lambda e: e["event"] == "ended", 5, seen)
        assert [e["event"] for e in seen] == ["starting", "connected", "ended"]
        assert seen[1]["width"] == 96 and seen[1]["fps"] == 60
        time.sleep(0.5)
        assert proc.is_alive() and len(ring_segments(ring)) == 2, "after the end the ring stays readable"
        assert proc.stop() == 0
    assert ring_segments(ring) == []
    reader.close()


def test_corrupt_file_fails_clearly_and_exits(ring: str, tmp_path: Path) -> None:
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(20_000))
    events = CTX.Queue()
    with CaptureProcess(camera(str(bad)), ring, status_queue=events) as proc:
        seen: list[dict] = []
        failed = wait_for(events, lambda e: e["event"] == "failed", 20, seen)
        assert "cannot decode video file" in failed["message"] and "broken.mp4" in failed["message"]
        proc.process.join(10)
        assert proc.exitcode == 2


def test_bad_image_in_a_folder_fails_instead_of_starting_over(ring: str, tmp_path: Path) -> None:
    import cv2
    import numpy as np

    for i in range(3):
        cv2.imwrite(str(tmp_path / f"f{i}.png"), np.full((8, 8, 3), 50 * i, np.uint8))
    (tmp_path / "f3.png").write_bytes(b"not a png")
    events = CTX.Queue()
    with CaptureProcess(camera(f"{tmp_path}?realtime=false"), ring, status_queue=events) as proc:
        seen: list[dict] = []
        failed = wait_for(events, lambda e: e["event"] in ("failed", "reconnecting"), 20, seen)
        assert failed["event"] == "failed" and "cannot decode image" in failed["message"] and "f3.png" in failed["message"]
        proc.process.join(10)
        assert proc.exitcode == 2


def test_unreachable_camera_retries_then_gives_up_without_leaking_credentials(
        ring: str, capfd: pytest.CaptureFixture[str]) -> None:
    url = f"rtsp://admin:{PASSWORD}@127.0.0.1:{free_port()}/live"
    cam = camera(url, open_timeout_s=2, reconnect=ReconnectConfig(initial_s=0.1, factor=2, max_s=0.2, max_attempts=3))
    events, logs = CTX.Queue(), CTX.Queue()
    with CaptureProcess(cam, ring, status_queue=events, log_queue=logs) as proc, \
            RingReader(ring, wait_s=15) as reader:
        seen: list[dict] = []
        wait_for(events, lambda e: e["event"] == "reconnecting" and e["attempt"] == 2, 20, seen)
        state = reader.source_state()
        assert state.status == "reconnecting" and state.attempt >= 2 and "nothing is listening" in state.message
        failed = wait_for(events, lambda e: e["event"] == "failed", 20, seen)
        assert failed["message"].startswith("gave up after 3 reconnect attempts: cannot open camera rtsp://***@127.0.0.1")
        proc.process.join(10)
        assert proc.exitcode == 2
    assert [e["attempt"] for e in seen if e["event"] == "reconnecting"] == [1, 2, 3]
    records = [r.getMessage() for r in drain_queue(logs, 0.5)]
    out, err = capfd.readouterr()
    everything = "\n".join([repr(seen), state.message, *records, out, err])
    assert any("reconnecting attempt 3" in r for r in records)
    assert "rtsp://***@127.0.0.1" in everything
    assert PASSWORD not in everything and "admin" not in everything


def test_rtsp_camera_drops_for_5_s_and_capture_comes_back_by_itself(
        ring: str, rtsp_server: RtspServer) -> None:  # noqa: F811
    events = CTX.Queue()
    cam = camera(rtsp_server.url(), read_timeout_s=3)  # default backoff: 0.5 s doubling up to 10 s
    with CaptureProcess(cam, ring, status_queue=events):
        seen: list[dict] = []
        wait_for(events, lambda e: e["event"] == "connected", 20, seen)
        reader = RingReader(ring)
        before = [reader.next(5) for _ in range(10)]
        assert all(f is not None and f.frame.image.shape == (240, 320, 3) for f in before)

        rtsp_server.stop()
        stopped_ns = time.monotonic_ns()
        wait_for(events, lambda e: e["event"] == "lost", 10, seen)
        assert reader.source_state().status in ("lost", "reconnecting")
        time.sleep(max(0.0, 5 - (time.monotonic_ns() - stopped_ns) / 1e9))
        rtsp_server.start()
        restarted = time.monotonic()
        restarted_ns = time.monotonic_ns()

        wait_for(events, lambda e: e["event"] == "connected", 10, seen)
        last_before = max(f.frame.t_mono_ns for f in before)
        # skip what was decoded before the restart (FFmpeg may still hand out frames it had
        # buffered just after the server stopped)
        while (got := reader.next(10)) is not None and got.frame.t_mono_ns < restarted_ns:
            last_before = got.frame.t_mono_ns
        assert got is not None, "no frame after the camera came back"
        assert time.monotonic() - restarted < 10, "frames must resume within 10 s of the restart"
        assert reader.source_state().status == "connected"
        outage_s = (restarted_ns - stopped_ns) / 1e9  # >= 5
        assert (got.frame.t_mono_ns - last_before) / 1e9 >= outage_s - 1.0, \
            "the outage shows as a gap in the timestamps"
        kinds = [e["event"] for e in seen]
        assert kinds[kinds.index("lost"):] [:2] == ["lost", "reconnecting"] and kinds[-1] == "connected"
        attempts = [e["attempt"] for e in seen if e["event"] == "reconnecting"]
        assert attempts == list(range(1, len(attempts) + 1))
        reader.close()


def wait_until_writer(reader: RingReader, pid: int, timeout_s: float = 15) -> None:
    """Until the reader follows the capture process `pid` and it delivers frames."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = reader.source_state()
        if state.writer_pid == pid and state.status == "connected" and state.frames_written > 0:
            return
        time.sleep(0.05)
    raise AssertionError(f"reader did not follow capture process {pid}: {reader.source_state()}")


def test_kill_9_leaves_readers_a_lost_state_and_nothing_in_dev_shm(ring: str) -> None:
    proc = CaptureProcess(camera("synthetic://160x120@30"), ring).start()
    reader = RingReader(ring, wait_s=15)
    assert reader.next(10) is not None
    os.kill(proc.pid, signal.SIGKILL)
    proc.process.join(5)
    state = reader.source_state()
    assert state.status == "lost" and not state.writer_alive
    assert f"capture process (pid {proc.pid}) is gone" in state.message
    assert reader.latest(0.3) is None
    # the supervisor restarts it; the new capture process takes the ring over and the reader follows
    successor = CaptureProcess(camera("synthetic://160x120@30"), ring).start()
    wait_until_writer(reader, successor.pid)
    assert reader.latest(5) is not None and reader.source_state().status == "connected"
    assert successor.stop() == 0 and proc.stop() == -signal.SIGKILL
    assert ring_segments(ring) == []
    # and when nobody restarts it, stop() of the killed one reclaims its segments
    third = CaptureProcess(camera("synthetic://160x120@30"), ring).start()
    wait_until_writer(reader, third.pid)
    os.kill(third.pid, signal.SIGKILL)
    third.process.join(5)
    assert len(ring_segments(ring)) == 2
    assert third.stop() == -signal.SIGKILL and ring_segments(ring) == []
    reader.close()


def test_sigterm_closes_the_ring_cleanly(ring: str) -> None:
    proc = CaptureProcess(camera("synthetic://64x48@30"), ring).start()
    reader = RingReader(ring, wait_s=15)
    assert reader.next(10) is not None
    proc.process.terminate()
    proc.process.join(10)
    assert ring_segments(ring) == [], "SIGTERM must run the cleanup"
    assert reader.source_state().status == "stopped"
    reader.close()


def test_run_capture_in_a_thread_logs_without_secrets(ring: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"rtsp://viewer:{PASSWORD}@127.0.0.1:{free_port()}/x"
    cam = camera(url, open_timeout_s=1, reconnect=ReconnectConfig(initial_s=0.05, max_s=0.1, max_attempts=2))
    stop = threading.Event()
    assert run_capture(cam, ring, stop) == "failed"
    assert "reconnecting attempt 2" in caplog.text and "rtsp://***@127.0.0.1" in caplog.text
    assert PASSWORD not in caplog.text

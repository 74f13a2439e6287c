"""The capture process: one camera into one shared-memory ring, back by itself after a drop.

`run_capture(camera, ring_name, stop_event, status_queue=None)` is what a spawned process
runs (`CaptureProcess` starts one). A reader thread decodes the source as fast as it
delivers and writes every frame into the ring, so the ring always holds the freshest
frame and nothing piles up in decoder buffers; the main thread keeps a heartbeat and
watches `stop_event`.

Status events, published in the ring header (`RingReader.source_state()`) and, when a
queue is given, put on it as small dicts
`{"event", "camera", "source", "t_wall_ns", "attempt", "message", ...}`:

    connected      the source opened (with width, height, fps)
    lost           a live source stopped delivering (message says why)
    reconnecting   attempt n starts after delay_s (exponential backoff from camera.reconnect),
                   or as soon as a probe finds a lost network camera answering again
    ended          a file / finite synthetic source reached its end; readers see the marker,
                   and the ring stays readable until stop_event is set
    failed         cannot work: a file that does not open, or reconnect.max_attempts used up
    stopped        stop_event was set (or SIGTERM); the ring is closed and removed

Source URLs and messages never carry credentials (`redact_url`, `scrub`).
"""
from __future__ import annotations

import logging
import logging.handlers
import multiprocessing as mp
import queue
import signal
import threading
import time
from types import SimpleNamespace
from typing import Any

import cv2

from rtseg.config import CameraConfig, ReconnectConfig
from rtseg.proc import EXIT_FATAL, EXIT_OK, StopFlag, exit_now, setup_child_logging
from rtseg.ring import RingWriter, remove_if_stale
from rtseg.sources import SourceError, open_source, redact_url, scrub, source_kind
from rtseg.sources.network import answers

log = logging.getLogger(__name__)

HEARTBEAT_S = 0.2


def backoff_delay(reconnect: ReconnectConfig, attempt: int) -> float:
    """Seconds to wait before reconnect attempt n (1-based): initial_s * factor**(n-1), capped."""
    return min(reconnect.initial_s * reconnect.factor ** (attempt - 1), reconnect.max_s)


class _Reporter:
    """Publishes status events to the ring header, the optional queue and the log."""

    def __init__(self, camera: CameraConfig, writer: RingWriter, status_queue: Any) -> None:
        self.camera, self.writer, self.queue = camera, writer, status_queue
        self.source = redact_url(camera.source)

    def __call__(self, event: str, *, attempt: int = 0, message: str = "", **extra: Any) -> None:
        message = scrub(message, self.camera.source)
        fps = extra.get("fps")
        self.writer.set_status(event, attempt=attempt, message=message, fps=fps)
        level = logging.INFO if event in ("starting", "connected", "ended", "stopped") else logging.WARNING
        log.log(level, "camera %s (%s): %s%s%s", self.camera.id, self.source, event,
                f" attempt {attempt}" if attempt else "", f": {message}" if message else "")
        if self.queue is not None:
            msg = {"event": event, "camera": self.camera.id, "source": self.source, "t_wall_ns": time.time_ns(),
                   "attempt": attempt, "message": message, **extra}
            try:
                self.queue.put_nowait(msg)
            except queue.Full:
                log.warning("status queue full; dropped %s event for camera %s", event, self.camera.id)


class _ReaderThread(threading.Thread):
    """Opens the source, reads it into the ring, reconnects with backoff."""

    def __init__(self, camera: CameraConfig, writer: RingWriter, report: _Reporter, next_index: Any) -> None:
        super().__init__(name=f"capture-{camera.id}", daemon=True)
        self.camera, self.writer, self.report = camera, writer, report
        self.next_index = next_index  # .value: the index the next frame gets (shared with successors)
        self.stop = threading.Event()
        self.final = "stopped"
        self._step = 0  # position in the backoff schedule; starts over when a probe finds the camera back
        self._answering = False  # the last probe's answer
        self._probe = camera.reconnect.probe_s if source_kind(camera.source) == "network" else None

    def run(self) -> None:
        try:
            self._loop()
        except Exception as e:  # a bug or an unexpected library error: say so, do not hang
            log.exception("camera %s: capture failed", self.camera.id)
            self.final = "failed"
            self.report("failed", message=f"unexpected error: {type(e).__name__}: {e}")

    def _loop(self) -> None:
        cam, attempt = self.camera, 0
        while not self.stop.is_set():
            try:
                source = open_source(cam.source, source_id=cam.id, width=cam.width, height=cam.height,
                                     fps=cam.fps, open_timeout_s=cam.open_timeout_s,
                                     read_timeout_s=cam.read_timeout_s)
            except SourceError as e:
                if not e.live:
                    self.final = "failed"
                    self.report("failed", message=str(e))
                    return
                attempt += 1
                if not self._wait_before(attempt, str(e)):
                    return
                continue
            attempt = self._step = 0
            with source:
                source.resume_at(self.next_index.value)  # never an index twice: after a reconnect, after a restart
                self.report("connected", width=source.width, height=source.height, fps=source.fps)
                try:
                    while not self.stop.is_set():
                        frame = source.read()
                        if frame is None:
                            self.writer.mark_ended()
                            self.final = "ended"
                            self.report("ended", message="end of stream")
                            return
                        if cam.paced and not source.live and not self.writer.wait_for_consumer(self.stop.is_set):
                            return
                        self.next_index.value = frame.index + 1  # first: a kill now leaves a gap, not a repeat
                        self.writer.write(frame)
                except SourceError as e:
                    if not source.live:  # a bad image in a folder: reopening would start over
                        self.final = "failed"
                        self.report("failed", message=str(e))
                        return
                    self.report("lost", message=str(e))
                    attempt += 1
                    if not self._wait_before(attempt, str(e)):
                        return

    def _wait_before(self, attempt: int, why: str) -> bool:
        """Report and sleep before reconnect attempt n; False when giving up or stopping."""
        limit = self.camera.reconnect.max_attempts
        if limit is not None and attempt > limit:
            self.final = "failed"
            self.report("failed", attempt=attempt - 1, message=f"gave up after {limit} reconnect attempts: {why}")
            return False
        self._step += 1
        delay = backoff_delay(self.camera.reconnect, self._step)
        self.report("reconnecting", attempt=attempt, message=why, delay_s=delay)
        return self._sleep(delay)

    def _sleep(self, delay: float) -> bool:
        """Wait `delay` s, probing a network camera every reconnect.probe_s: when it answers
        again after not answering, stop waiting and start the backoff over. False: stopping."""
        deadline = time.monotonic() + delay
        while (remaining := deadline - time.monotonic()) > 0:
            if self.stop.wait(min(remaining, self._probe or remaining)):
                return False
            if self._probe and time.monotonic() < deadline:
                was, self._answering = self._answering, answers(self.camera.source, min(1.0, self._probe))
                if self._answering and not was:
                    log.info("camera %s answers again: reconnecting now", self.camera.id)
                    self._step = 0
                    return True
        return True


def _raise_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def run_capture(camera: CameraConfig, ring_name: str, stop_event: Any, status_queue: Any = None,
                next_index: Any = None) -> str:
    """Capture `camera` into ring `ring_name` until stop_event is set (a StopFlag or threading
    Event). Frames are numbered from `next_index.value` (rtseg.proc.RunState: shared with the
    process that replaces this one; None: from 0). Returns "stopped", "ended" or "failed"."""
    writer = RingWriter(ring_name, slots=camera.ring_slots, source_id=camera.id)
    report = _Reporter(camera, writer, status_queue)
    reader = _ReaderThread(camera, writer, report, next_index or SimpleNamespace(value=0))
    try:
        report("starting")
        reader.start()
        while not stop_event.is_set() and (reader.is_alive() or reader.final == "ended"):
            writer.heartbeat()
            time.sleep(HEARTBEAT_S)
    finally:
        reader.stop.set()
        reader.join(timeout=camera.read_timeout_s + 1.0)
        if reader.final == "stopped":
            report("stopped")
        writer.close()
    return reader.final


def capture_main(camera: CameraConfig, ring_name: str, stop_event: Any, status_queue: Any = None,
                 log_endpoint: str | None = None, log_level: str = "INFO", next_index: Any = None) -> None:
    """Entry point of a spawned capture process: SIGTERM stops it cleanly, log records go to
    the supervisor's LogListener at log_endpoint when given; exits 0 (stopped, ended) or 2 (failed)."""
    signal.signal(signal.SIGTERM, _raise_on_sigterm)  # run the finally blocks: close and remove the ring
    # OpenCV's own "[ WARN] ... can't be used to capture by name" lines add nothing to our
    # SourceError messages; FFmpeg's error lines (no credentials in them) stay.
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    if log_endpoint is not None:
        setup_child_logging(log_endpoint, log_level)
    final = run_capture(camera, ring_name, stop_event, status_queue, next_index)
    if status_queue is not None:  # a test's multiprocessing.Queue: let its feeder thread hand over
        raise SystemExit(EXIT_FATAL if final == "failed" else EXIT_OK)
    exit_now(EXIT_FATAL if final == "failed" else EXIT_OK)  # the ring is closed: skip the slow teardown


class CaptureProcess:
    """run_capture in a `spawn`ed process named capture-<id>, for the supervisor and tests.
    Exit code 0 after stopped/ended, 2 after failed. `stop()` asks it to stop, escalates to
    SIGTERM/SIGKILL if it does not, and reclaims the ring's segments if it died uncleanly."""

    def __init__(self, camera: CameraConfig, ring_name: str | None = None, *, status_queue: Any = None,
                 log_endpoint: str | None = None, ctx: Any = None, next_index: Any = None) -> None:
        self.camera = camera
        self.ring_name = ring_name or camera.id
        ctx = ctx or mp.get_context("spawn")
        self.stop_event = StopFlag(ctx)
        self.process = ctx.Process(
            target=capture_main,
            args=(camera, self.ring_name, self.stop_event, status_queue, log_endpoint, "INFO", next_index),
            name=f"capture-{camera.id}",
            daemon=True,
        )

    def start(self) -> CaptureProcess:
        self.process.start()
        return self

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def is_alive(self) -> bool:
        return self.process.is_alive()

    @property
    def exitcode(self) -> int | None:
        return self.process.exitcode

    def stop(self, timeout_s: float = 5.0) -> int | None:
        """Stop the process and return its exit code (negative: killed by that signal)."""
        self.stop_event.set()
        self.process.join(timeout_s)
        for escalate in (self.process.terminate, self.process.kill):
            if not self.process.is_alive():
                break
            escalate()
            self.process.join(2.0)
        if self.process.exitcode not in (EXIT_OK, EXIT_FATAL):
            remove_if_stale(self.ring_name)  # died uncleanly: reclaim, unless a successor owns it
        return self.process.exitcode

    def __enter__(self) -> CaptureProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.process.pid is not None:
            self.stop()

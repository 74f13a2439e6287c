"""The segmenter's pulse: a thread beside the tracking loop that keeps `status` on time and
makes a stop request immediate.

The tracking loop (the process's main thread) owns the model, the rings and the control
socket; a frame at image_size 1024 on a CPU takes seconds, and so does re-tracking a late
click. Anything that waited for the loop would wait for the frame. So:

- `status` goes out every `network.status_interval_s` on a fixed schedule from this thread
  (`Segmenter.publish_status` is safe to call beside the loop), and at once (within
  SOURCE_POLL_S) when a camera's source_state changes;
- while the loop is inside model work it cannot beat its heartbeat, so this thread beats for
  it, for at most MAX_WORK_S per piece of work: a frame that takes longer than
  `supervisor.heartbeat_timeout_s` is slow, not hung (a stopped process stops this thread too);
- when the stop flag is set while the loop is inside model work (`with pulse.working():`),
  the main thread is interrupted (SIGUSR1 -> `Abandon` raised where it is) and goes straight
  to its clean-up. Nothing is lost: the prompt log is already on disk, and the frame would
  have been stale anyway. If the main thread does not get out within ABANDON_GRACE_S (one
  long native call), this thread flushes the logs and ends the process itself.
"""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

log = logging.getLogger("rtseg.pipeline.segmenter")

ABANDON_GRACE_S = 1.0
SOURCE_POLL_S = 0.1  # how often the cameras' source states are compared with the last status
MAX_WORK_S = 600.0  # model work longer than this is a hang: the heartbeat stops and the supervisor acts


class Abandon(BaseException):
    """Raised in the main thread to leave model work at once (BaseException: no `except
    Exception` on the way catches it)."""


class Pulse(threading.Thread):
    """Create it, then `start()`; `segmenter` is set once it exists. Created in the main thread
    (a segmenter process) it installs the SIGUSR1 handler there and can interrupt model work;
    created in another thread (rtseg.cluster runs the loop in a thread of a Ray actor) a stop
    waits for the work in progress."""

    def __init__(self, stop_event: Any, status_interval_s: float, heartbeat: Any = None) -> None:
        super().__init__(name="segmenter-pulse", daemon=True)
        self.stop_event = stop_event
        self.interval_s = status_interval_s
        self.segmenter: Any = None
        self.busy = False
        self.heartbeat = heartbeat
        self._busy_since = 0.0
        self._done = threading.Event()
        self._main = threading.main_thread().ident
        self.interruptible = threading.current_thread() is threading.main_thread()
        if self.interruptible:
            signal.signal(signal.SIGUSR1, self._abandon_here)

    def _abandon_here(self, _signum: int, _frame: object) -> None:
        if self.busy:  # runs in the main thread: busy cannot change under us
            self.busy = False
            raise Abandon

    @contextlib.contextmanager
    def working(self) -> Iterator[None]:
        """Model work the stop request may interrupt (and this thread beats for)."""
        self._busy_since = time.monotonic()
        self.busy = True
        try:
            yield
        finally:
            self.busy = False

    def run(self) -> None:
        due = next_poll = time.monotonic()
        interrupted_at = None
        while not self._done.is_set():
            now = time.monotonic()
            if self.segmenter is not None and now >= due:
                try:
                    self.segmenter.publish_status()
                except Exception:
                    log.exception("could not publish status")
                due += self.interval_s
                if due <= now:  # fell behind (a stopped process): keep the phase, skip the missed ones
                    due = now + self.interval_s - (now - due) % self.interval_s
            elif self.segmenter is not None and now >= next_poll:
                try:
                    self.segmenter.publish_status_if_changed()
                except Exception:
                    log.exception("could not publish status")
            if now >= next_poll:
                next_poll = now + SOURCE_POLL_S
            if self.heartbeat is not None and self.busy and now - self._busy_since < MAX_WORK_S:
                self.heartbeat.value = time.time()
            if self.interruptible and self.stop_event.is_set() and self.busy:
                if interrupted_at is None:
                    interrupted_at = now
                    signal.pthread_kill(self._main, signal.SIGUSR1)
                elif now - interrupted_at > ABANDON_GRACE_S:
                    log.warning("the frame in progress did not give way within %.1f s of the stop request: "
                                "exiting", ABANDON_GRACE_S)
                    logging.shutdown()
                    os._exit(0)
            wait = 0.02 if self.segmenter is None else min(0.02, max(0.001, due - time.monotonic()))
            self._done.wait(wait)

    def stop(self) -> None:
        self._done.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(2.0)

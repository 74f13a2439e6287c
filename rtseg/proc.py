"""What every child process of `rtseg run` shares (the bottom floor: imports nothing of rtseg's).

- exit codes: EXIT_OK, EXIT_FATAL (bad config, missing weights, a folder that cannot be
  written: the supervisor does not restart a child that exits with it);
- child logging: every record goes to the supervisor's `LogListener`, at the configured level,
  over a transport no child can block for the others (below);
- the stop request: `StopFlag`, a byte of shared memory without a lock;
- signals: the supervisor decides when a child stops (SIGINT ignored, SIGTERM -> stop); a
  command's own process stops alike on Ctrl-C and SIGTERM;
- ring names: which shared-memory ring a run's camera writes to;
- process titles: `rtseg: segmenter`, `rtseg: capture-cam1`, ... in ps, top and htop.

Why no multiprocessing.Queue or Event between the supervisor and its children: both take a
lock shared by every process (a Queue's writer lock, an Event's condition lock). A child
killed with `kill -9` while it holds one leaves it held forever: no child can log any more,
and the supervisor hangs in `set()` or at exit. Here each child has its own ZeroMQ PUSH
connection to the supervisor's PULL socket (a message from a killed child is either whole or
absent, and nobody waits for it), and the stop request is one byte each side reads and writes
without a lock.
"""
from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
from typing import Any, Callable

import zmq

EXIT_OK, EXIT_FATAL = 0, 2

LOG_HWM = 10_000  # records a child queues while the supervisor is behind; more are dropped and counted
LOG_LINGER_MS = 500  # at exit a child waits at most this long to hand over its last records


def ring_name_for(run_id: str, camera_id: str) -> str:
    """The shared-memory ring of `camera_id` in the run `run_id` (one name, used by every process)."""
    return f"{run_id}-{camera_id}"


class StopFlag:
    """The supervisor's stop request, shared with spawned children (pass it in the Process
    args): `set()`, `is_set()`, `wait(timeout_s)`. One byte of shared memory and no lock, so
    no process, killed at any moment, can leave it unusable for the others."""

    POLL_S = 0.02

    def __init__(self, ctx: Any = None) -> None:
        self._value = (ctx or mp.get_context("spawn")).RawValue("b", 0)

    def set(self) -> None:
        self._value.value = 1

    def is_set(self) -> bool:
        return bool(self._value.value)

    def wait(self, timeout_s: float | None = None) -> bool:
        """Poll until set or timeout_s passed; returns is_set()."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while not self.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(self.POLL_S if deadline is None else max(0.0, min(self.POLL_S, deadline - time.monotonic())))
        return True


class RunState:
    """What outlives a child's restart within one `rtseg run` (shared memory, no lock; pass it
    in the Process args): the run's `stream` id, and per camera the next capture frame index
    (`next_index`, advanced by the capture process *before* it writes a frame) and the last
    frame index published (`published`, advanced by the segmenter *before* it publishes). A
    restarted capture process continues the count and a restarted segmenter never publishes an
    index twice: a kill can leave a gap, never a repeat."""

    def __init__(self, cameras: list[str], ctx: Any = None, stream: str | None = None) -> None:
        import secrets

        ctx = ctx or mp.get_context("spawn")
        self.stream = stream or secrets.token_hex(8)
        self.next_index = {cam: ctx.RawValue("q", 0) for cam in cameras}
        self.published = {cam: ctx.RawValue("q", -1) for cam in cameras}


_RECORD_FIELDS = ("name", "levelno", "levelname", "created", "msecs", "processName", "process", "threadName")


class _PushHandler(logging.Handler):
    """A child's end of child logging: each record, formatted to text here, travels as one
    ZeroMQ message (JSON) over this process's own connection. Never blocks: when the
    supervisor is LOG_HWM records behind, records are dropped and the count is logged later."""

    def __init__(self, endpoint: str) -> None:
        super().__init__()
        self._context = zmq.Context(io_threads=1)
        self._socket = self._context.socket(zmq.PUSH)
        self._socket.setsockopt(zmq.SNDHWM, LOG_HWM)
        self._socket.setsockopt(zmq.LINGER, LOG_LINGER_MS)
        self._socket.connect(endpoint)
        self._pid = os.getpid()
        self.dropped = 0

    def _pack(self, record: logging.LogRecord) -> bytes:
        fields = {k: getattr(record, k) for k in _RECORD_FIELDS}
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + "".join(traceback.format_exception(*record.exc_info)).rstrip()
        elif record.exc_text:
            text += "\n" + record.exc_text
        if record.stack_info:
            text += "\n" + record.stack_info
        fields["msg"] = text
        return json.dumps(fields, default=str).encode()

    def emit(self, record: logging.LogRecord) -> None:
        if self._socket is None or os.getpid() != self._pid:
            return
        try:
            data = self._pack(record)
        except Exception:
            self.handleError(record)
            return
        try:
            if self.dropped:
                note = logging.makeLogRecord({"name": "rtseg.proc", "levelno": logging.WARNING,
                                              "levelname": "WARNING", "msg": f"{self.dropped} log record(s) of "
                                              "this process were dropped: the supervisor did not keep up"})
                self._socket.send(self._pack(note), zmq.NOBLOCK)
                self.dropped = 0
            self._socket.send(data, zmq.NOBLOCK)
        except zmq.Again:
            self.dropped += 1
        except zmq.ZMQError:
            pass  # closing

    def close(self) -> None:
        with self.lock:
            if self._socket is not None and os.getpid() == self._pid:
                self._socket.close()  # waits up to LOG_LINGER_MS for the last records to leave
                self._context.term()
            self._socket = None
        super().close()


def set_process_title(role: str) -> None:
    """Show this process as `rtseg: <role>` in ps, top and htop (its command line and, cut to
    15 characters, its kernel name)."""
    import setproctitle

    setproctitle.setproctitle(f"rtseg: {role}")


def run_child(role: str, target: Callable[..., Any], *args: Any) -> None:
    """The target of every child process of `rtseg run`: title the process after its role,
    then run `target(*args)`."""
    set_process_title(role)
    target(*args)


def setup_child_logging(log_endpoint: str | None, level: str = "INFO") -> None:
    """In a child process: send every log record to the supervisor's LogListener at
    `log_endpoint` (None: to stderr), at `level`."""
    root = logging.getLogger()
    for old in root.handlers:
        old.close()
    root.handlers[:] = [_PushHandler(log_endpoint) if log_endpoint else logging.StreamHandler()]
    root.setLevel(level.upper())


class LogListener:
    """The supervisor's end of child logging: a ZeroMQ PULL socket on `ipc://` in a private
    (0700) temporary folder, read by a daemon thread that passes each record to `handle`
    (default: the supervisor's own logger of the record's name, so its handlers and format
    apply). `endpoint` goes to the children; `stop()` returns within its timeout whatever
    the children did."""

    def __init__(self, handle: Callable[[logging.LogRecord], Any] | None = None) -> None:
        self.handle = handle or _handle_here
        self._dir = tempfile.mkdtemp(prefix="rtseg-log-")
        self.endpoint = f"ipc://{self._dir}/children"
        self._context = zmq.Context(io_threads=1)
        self._socket = self._context.socket(zmq.PULL)
        self._socket.setsockopt(zmq.RCVHWM, LOG_HWM)
        self._socket.bind(self.endpoint)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="child-logs", daemon=True)

    def start(self) -> LogListener:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._socket.poll(100):
                self._drain()
        self._drain()

    def _drain(self) -> None:
        while True:
            try:
                data = self._socket.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                record = logging.makeLogRecord(json.loads(data))
            except ValueError:
                continue  # not ours: the socket is private, but never let one message stop the listener
            try:
                self.handle(record)
            except Exception:
                pass

    def stop(self, timeout_s: float = 1.0) -> None:
        """Hand over what has arrived, then close (bounded by timeout_s: a handler stuck on a
        blocked stderr is left behind in its daemon thread)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        if not self._thread.is_alive():
            self._socket.close(linger=0)
            self._context.term()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> LogListener:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _handle_here(record: logging.LogRecord) -> None:
    logger = logging.getLogger(record.name)
    if logger.isEnabledFor(record.levelno):
        logger.handle(record)


def exit_now(code: int) -> None:
    """End a child process that has cleaned up after itself: hand over the last log records,
    flush stdout/stderr, and skip the interpreter's teardown (seconds for a process that holds
    a torch model, which a stop request must not wait for)."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
    os._exit(code)


def stop_on_sigterm(on_stop: Callable[[], Any]) -> None:
    """A child ignores Ctrl-C (the supervisor decides when it stops) and stops on SIGTERM."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: on_stop())


def stop_on_signals() -> threading.Event:
    """For a command's own process: an event that Ctrl-C (SIGINT) or SIGTERM sets, so it stops
    cleanly and the same way on both."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop

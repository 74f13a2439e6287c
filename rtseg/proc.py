"""What every child process of `rtseg run` shares (the bottom floor: imports nothing of rtseg's).

- exit codes: EXIT_OK, EXIT_FATAL (bad config, missing weights, a folder that cannot be
  written: the supervisor does not restart a child that exits with it);
- child logging: every record goes to the supervisor's single listener, at the configured level;
- signals: the supervisor decides when a child stops (SIGINT ignored, SIGTERM -> stop); a
  command's own process stops alike on Ctrl-C and SIGTERM;
- ring names: which shared-memory ring a run's camera writes to;
- process titles: `rtseg: segmenter`, `rtseg: capture-cam1`, ... in ps, top and htop.
"""
from __future__ import annotations

import logging
import logging.handlers
import signal
import threading
from typing import Any, Callable

EXIT_OK, EXIT_FATAL = 0, 2


def ring_name_for(run_id: str, camera_id: str) -> str:
    """The shared-memory ring of `camera_id` in the run `run_id` (one name, used by every process)."""
    return f"{run_id}-{camera_id}"


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


def setup_child_logging(log_queue: Any, level: str = "INFO") -> None:
    """In a child process: send every log record to the supervisor's single listener."""
    root = logging.getLogger()
    root.handlers[:] = [logging.handlers.QueueHandler(log_queue)] if log_queue is not None else [logging.StreamHandler()]
    root.setLevel(level.upper())


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

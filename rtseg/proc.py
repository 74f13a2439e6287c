"""What every child process of `rtseg run` shares (the bottom floor: imports nothing of rtseg's).

- exit codes: EXIT_OK, EXIT_FATAL (bad config, missing weights, a folder that cannot be
  written: the supervisor does not restart a child that exits with it);
- child logging: every record goes to the supervisor's single listener, at the configured level;
- signals: the supervisor decides when a child stops (SIGINT ignored, SIGTERM -> stop);
- ring names: which shared-memory ring a run's camera writes to.
"""
from __future__ import annotations

import logging
import logging.handlers
import signal
from typing import Any, Callable

EXIT_OK, EXIT_FATAL = 0, 2


def ring_name_for(run_id: str, camera_id: str) -> str:
    """The shared-memory ring of `camera_id` in the run `run_id` (one name, used by every process)."""
    return f"{run_id}-{camera_id}"


def setup_child_logging(log_queue: Any, level: str = "INFO") -> None:
    """In a child process: send every log record to the supervisor's single listener."""
    root = logging.getLogger()
    root.handlers[:] = [logging.handlers.QueueHandler(log_queue)] if log_queue is not None else [logging.StreamHandler()]
    root.setLevel(level.upper())


def stop_on_sigterm(on_stop: Callable[[], Any]) -> None:
    """A child ignores Ctrl-C (the supervisor decides when it stops) and stops on SIGTERM."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: on_stop())

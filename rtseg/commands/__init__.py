"""One module per `rtseg` subcommand (`rtseg NAME` runs commands/NAME.py: `add_arguments(parser)`
and `main(args) -> int`), and what the commands share: the log line format, and stopping
the same way on Ctrl-C and SIGTERM."""
from __future__ import annotations

import logging
import signal
import threading

LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s: %(message)s"


def setup_logging(level: str | int = "INFO", *, process_names: bool = False) -> None:
    """Log lines of a command on stderr: time, (process,) logger, level, message."""
    fmt = LOG_FORMAT.replace("%(name)s", "%(processName)-18s %(name)s") if process_names else LOG_FORMAT
    logging.basicConfig(level=level.upper() if isinstance(level, str) else level, format=fmt)


def stop_on_signals() -> threading.Event:
    """An event that Ctrl-C (SIGINT) or SIGTERM sets: a command stops cleanly, the same on both."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop

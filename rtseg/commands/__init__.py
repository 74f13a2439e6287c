"""One module per `rtseg` subcommand (`rtseg NAME` runs commands/NAME.py: `add_arguments(parser)`
and `main(args) -> int`), and what the commands share: the log line format (stopping on
Ctrl-C and SIGTERM alike: rtseg.proc.stop_on_signals)."""
from __future__ import annotations

import logging

LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s: %(message)s"


def setup_logging(level: str | int = "INFO", *, process_names: bool = False) -> None:
    """Log lines of a command on stderr: time, (process,) logger, level, message."""
    fmt = LOG_FORMAT.replace("%(name)s", "%(processName)-18s %(name)s") if process_names else LOG_FORMAT
    logging.basicConfig(level=level.upper() if isinstance(level, str) else level, format=fmt)

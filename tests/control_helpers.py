"""A real ControlServer for tests, answering from a background thread."""
from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import zmq

from rtseg.control import ControlServer


@contextlib.contextmanager
def serving(handler: Any, context: zmq.Context, **kwargs: Any) -> Iterator[ControlServer]:
    """A ControlServer on a free loopback port, answering from a background thread."""
    server = ControlServer("tcp://127.0.0.1:*", handler, context=context, **kwargs)
    stop = threading.Event()
    thread = threading.Thread(target=server.serve, args=(stop, 10), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        stop.set()
        thread.join(5)
        server.close()

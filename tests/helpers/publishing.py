"""Publishing on real sockets in tests: a small masks message, the slow-joiner warm-up, and
emptying a subscriber."""
from __future__ import annotations

import time

import numpy as np

from rtseg.client import Subscriber
from rtseg.pipeline.publisher import Publisher
from rtseg.protocol import MasksMessage
from tests.helpers.messages import masks_of


def masks_message(camera: str, h: int = 24, w: int = 32, noise: bool = False) -> MasksMessage:
    """Frame 1 of `camera`: object 1 covering the frame (random pixels with `noise`)."""
    mask = np.random.default_rng(1).random((h, w)) < 0.5 if noise else np.ones((h, w), bool)
    return masks_of(camera, 1, {1: mask}, scores=[1.0], capture_ns=1, capture_wall_ns=2, processed_ns=3)


def warm_up(pub: Publisher, subscribers: list[Subscriber]) -> None:
    """Publish on camera "warm" until every subscriber has one (ZeroMQ's slow joiner)."""
    waiting = set(range(len(subscribers)))
    deadline = time.monotonic() + 10
    while waiting and time.monotonic() < deadline:
        pub.publish(masks_message("warm"))
        for i in list(waiting):
            if subscribers[i].recv(timeout=0.02) is not None:
                waiting.discard(i)
    assert not waiting, "subscribers never connected"


def drain(sub: Subscriber, quiet_s: float = 0.05) -> None:
    """Receive and drop until nothing has come for `quiet_s` (e.g. what a warm-up left)."""
    while sub.recv(timeout=quiet_s) is not None:
        pass

"""The PUB side of the protocol: serialize first, send without ever blocking, count drops.

Emits: masks.<camera>, frame.<camera> (rate-limited JPEG), prompt.<camera>, status.

ZeroMQ PUB keeps one queue per subscriber, bounded by the high-water mark (`network.hwm`
messages): a subscriber that stops reading loses its own messages once its queue is full,
and nobody else's. libzmq does not tell the sender about those drops, so every message
carries a per-topic `seq`; `rtseg.client.Subscriber` counts the gaps. What this side can see
(sends refused, frames held back by the rate limit, messages that failed to serialize) is in
`Publisher.stats()`, which the segmenter puts into its status message.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import Counter
from typing import TYPE_CHECKING

import numpy as np
import zmq

from rtseg.protocol import FrameMessage, Message, pack
from rtseg.security import bind_server_socket

if TYPE_CHECKING:
    from rtseg.config import FrameTopicConfig, NetworkConfig
    from rtseg.security import CurveServer

log = logging.getLogger(__name__)


class FrameRateLimiter:
    """Per camera: lets a frame through when at least 1/fps seconds passed since the last one."""

    def __init__(self, fps: float):
        if fps <= 0:
            raise ValueError(f"frame topic fps must be > 0, got {fps}")
        self.interval_ns = int(1e9 / fps)
        self._last_ns: dict[str, int] = {}

    def due(self, camera: str, now_ns: int | None = None) -> bool:
        now_ns = time.monotonic_ns() if now_ns is None else now_ns
        last = self._last_ns.get(camera)
        if last is not None and now_ns - last < self.interval_ns:
            return False
        self._last_ns[camera] = now_ns
        return True


class Publisher:
    """Binds a PUB socket at `endpoint` ("tcp://127.0.0.1:*" picks a free port; see
    `.endpoint`). Thread-safe: the segmenter's loop and its status thread both publish."""

    def __init__(self, endpoint: str, *, hwm: int = 20, frame_fps: float | None = None, frame_quality: int = 80,
                 curve: CurveServer | None = None, context: zmq.Context | None = None, stream: str = ""):
        self.stream = stream  # the run's stream id, in every header
        self.frame_quality = frame_quality
        self.frame_limiter = FrameRateLimiter(frame_fps) if frame_fps else None
        self._seq: Counter[bytes] = Counter()
        self._stats: Counter[str] = Counter()
        # an XPUB: a PUB that also tells us who subscribed to what
        self._socket, self.endpoint = bind_server_socket(zmq.XPUB, endpoint, curve=curve, context=context,
                                                         what="publisher", config_key="network.pub",
                                                         options={zmq.SNDHWM: hwm})
        self._subscriptions: Counter[bytes] = Counter()
        self._lock = threading.Lock()  # one thread at a time on the socket and the counters
        self._closed = False
        log.info("publishing on %s (hwm %d%s)", self.endpoint, hwm, ", CURVE" if curve else "")

    @classmethod
    def from_config(cls, network: NetworkConfig, *, curve: CurveServer | None = None,
                    context: zmq.Context | None = None, stream: str = "") -> Publisher:
        frames: FrameTopicConfig = network.frame_topic
        return cls(network.pub, hwm=network.hwm, frame_fps=frames.fps if frames.enabled else None,
                   frame_quality=frames.quality, curve=curve, context=context, stream=stream)

    def publish(self, msg: Message) -> bool:
        """Stamp `seq`, `published_ns` and `stream`, serialize every part, then send without blocking.
        Returns False if the socket refused the message (counted as `dropped`). Raises
        (having sent nothing) if the message cannot be serialized: that is a bug upstream."""
        with self._lock:
            return self._publish(msg)

    def _publish(self, msg: Message) -> bool:
        if self._closed:
            return False
        topic_kind = msg.TYPE
        key = f"{topic_kind}.{msg.camera}".encode() if msg.camera else topic_kind.encode()
        stamped = dataclasses.replace(msg, seq=self._seq[key], published_ns=time.monotonic_ns(), stream=self.stream)
        try:
            parts = pack(stamped)
        except Exception:
            self._stats["serialize_errors"] += 1
            raise
        self._seq[key] += 1
        try:
            self._socket.send_multipart(parts, zmq.NOBLOCK, copy=False)
        except zmq.Again:
            self._stats["dropped"] += 1
            return False
        self._stats["sent"] += 1
        self._stats[f"sent.{topic_kind}"] += 1
        return True

    def frame_due(self, camera: str) -> bool:
        """Whether the frame topic is on and the camera's next JPEG is due (call before
        encoding, so frames that would be dropped are never encoded)."""
        if self.frame_limiter is None:
            return False
        if self.frame_limiter.due(camera):
            return True
        self._stats["frames_rate_limited"] += 1
        return False

    def publish_frame(self, camera: str, frame_index: int, rgb: np.ndarray, *, capture_ns: int,
                      capture_wall_ns: int) -> bool:
        """Encode and publish frame.<camera> if the frame topic is on and a frame is due."""
        if not self.frame_due(camera):
            return False
        msg = FrameMessage.from_image(camera, frame_index, rgb, capture_ns=capture_ns,
                                      capture_wall_ns=capture_wall_ns, quality=self.frame_quality)
        return self.publish(msg)

    def subscribed(self, prefix: bytes = b"masks.") -> bool:
        """Whether some subscriber has a subscription starting with `prefix` (reads the
        subscribe/unsubscribe notices waiting on the socket; never blocks)."""
        with self._lock:
            return self._subscribed(prefix)

    def _subscribed(self, prefix: bytes) -> bool:
        while not self._closed:
            try:
                note = self._socket.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            if note:
                self._subscriptions[note[1:]] += 1 if note[0] == 1 else -1
        return any(n > 0 and topic.startswith(prefix) for topic, n in self._subscriptions.items())

    def stats(self) -> dict[str, int]:
        """sent, sent.<kind>, dropped (refused by the socket), frames_rate_limited,
        serialize_errors. Per-subscriber losses are invisible here: see the module doc."""
        with self._lock:
            return {"sent": 0, "dropped": 0, "frames_rate_limited": 0, "serialize_errors": 0, **self._stats}

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._socket.close(linger=0)

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

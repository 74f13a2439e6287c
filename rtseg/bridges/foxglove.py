"""Live Foxglove: a Foxglove WebSocket server (the official `foxglove-sdk`) fed by rtseg.

A Foxglove user opens `ws://HOST:8765` and sees each camera's video with its masks — no rtseg
code on their side. Topics and encodings: rtseg.bridges.foxglove_messages.

Reacts to: masks.<camera>, prompt.<camera>, event.<camera>, status, and frame.<camera> (the JPEG topic) for
cameras without a ring. Frames of a camera whose shared-memory ring is given (same host) are
read from the ring instead, at most `fps` a second, and JPEG-encoded only while a Foxglove
client is subscribed to that camera's image. Emits: nothing on rtseg's sockets.

The SDK server listens on a loopback port of its own; clients connect to a relay on `host:port`
that accepts both names of the protocol, `foxglove.sdk.v1` and `foxglove.websocket.v1`
(rtseg.bridges.foxglove_relay). The SDK keeps a bounded queue per Foxglove client and drops
that client's oldest messages when it falls behind, the relay drops a client that takes
nothing for 10 s, and the bridge's own ZeroMQ subscription drops at its high-water mark, so a
slow Foxglove never slows the segmenter.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any

import cv2
import numpy as np

from rtseg.bridges.foxglove_messages import FoxgloveMessage, compressed_image, image_schema, image_topic, to_foxglove
from rtseg.bridges.foxglove_relay import SubprotocolRelay
from rtseg.client import FrameImage, Masks, Subscriber
from rtseg.protocol import EVENT, FRAME, MASKS, PROMPT, STATUS
from rtseg.view.viewer import connectable

log = logging.getLogger("rtseg.bridges.foxglove")

DEFAULT_PORT = 8765


class FoxgloveBridge:
    """Serve `pub`'s masks (and frames, from `rings` or the JPEG topic) to Foxglove on
    `host:port` (port 0: any free port, see `.port`). `start()`, `stop()`, context manager."""

    def __init__(self, pub: str, *, cameras: list[str] | None = None, rings: dict[str, str] | None = None,
                 host: str = "127.0.0.1", port: int = DEFAULT_PORT, fps: float = 10.0, quality: int = 80,
                 curve: Any = None, context: Any = None, name: str = "rtseg") -> None:
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.pub = pub
        self.cameras = cameras
        self.rings = dict(rings or {})
        self.host, self.requested_port, self.fps, self.quality, self.name = host, port, fps, quality, name
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._channels: dict[str, Any] = {}
        self._counts: dict[str, int] = {"received": 0, "logged": 0, "ring_frames": 0, "mask_errors": 0}
        self._server: Any = None
        self._relay: SubprotocolRelay | None = None
        self._context: Any = None
        need_topic_frames = cameras is None or any(c not in self.rings for c in cameras)
        topics = [MASKS, PROMPT, EVENT, STATUS] + ([FRAME] if need_topic_frames else [])
        # created here so that a bad endpoint fails in the caller; used only by the messages thread
        self._subscriber = Subscriber(pub, cameras, topics, curve=curve, decode_masks=False, context=context)
        self._threads = [threading.Thread(target=self._guard, args=(self._messages_loop,), name="foxglove-messages",
                                          daemon=True)]
        for camera, ring in self.rings.items():
            self._threads.append(threading.Thread(target=self._guard, args=(self._ring_loop, camera, ring),
                                                  name=f"foxglove-ring-{camera}", daemon=True))

    # ------------------------------------------------------------ lifecycle
    def start(self) -> FoxgloveBridge:
        import foxglove

        self._context = foxglove.Context()
        try:  # the SDK on a loopback port of its own; the relay on the public one, for both protocol names
            self._server = foxglove.start_server(name=self.name, host="127.0.0.1", port=0, context=self._context)
            self._relay = SubprotocolRelay(self._server.port, host=self.host, port=self.requested_port).start()
        except Exception as e:
            if self._server is not None:
                self._server.stop()
                self._server = None
            self._subscriber.close()
            raise OSError(f"cannot serve Foxglove on {self.host}:{self.requested_port}: {e} (is the port in use? "
                          f"choose another with --port / foxglove.port)") from None
        for camera in self.rings:  # advertise ring cameras' images before their first frame
            self._channel_for(image_topic(camera), image_schema(), "protobuf")
        for t in self._threads:
            t.start()
        log.info("Foxglove: open ws://%s:%d in Foxglove (masks from %s%s)", self.host, self.port, self.pub,
                 f", frames from rings {sorted(self.rings)}" if self.rings else ", frames from the JPEG topic")
        return self

    @property
    def port(self) -> int:
        return self._relay.port if self._relay is not None else self.requested_port

    def stop(self, timeout_s: float = 2.0) -> None:
        self._stop.set()
        for t in self._threads:
            if t.is_alive():
                t.join(timeout_s)
        self._subscriber.close()
        if self._server is not None:  # first: its close frames reach the clients through the relay
            self._server.stop()
            self._server = None
        if self._relay is not None:
            self._relay.stop()
            self._relay = None

    def __enter__(self) -> FoxgloveBridge:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {**self._counts, "lost_messages": self._subscriber.stats()["dropped"]}

    def _guard(self, loop: Any, *args: Any) -> None:
        try:
            loop(*args)
        except Exception:
            log.exception("Foxglove bridge: %s thread failed", threading.current_thread().name)

    # ------------------------------------------------------------ publishing
    def _channel_for(self, topic: str, schema: Any, encoding: str) -> Any:
        import foxglove

        with self._lock:
            channel = self._channels.get(topic)
            if channel is None:
                channel = foxglove.Channel(topic, schema=foxglove.Schema(name=schema.name, encoding=schema.encoding,
                                                                         data=schema.data),
                                           message_encoding=encoding, context=self._context)
                self._channels[topic] = channel
            return channel

    def _log(self, message: FoxgloveMessage) -> None:
        channel = self._channel_for(message.topic, message.schema, message.message_encoding)
        channel.log(message.data, log_time=message.log_time_ns)
        with self._lock:
            self._counts["logged"] += 1

    # ------------------------------------------------------------ threads
    def _messages_loop(self) -> None:
        while not self._stop.is_set():
            item = self._subscriber.recv(timeout=0.1)
            if item is None:
                continue
            msg = item.message if isinstance(item, Masks | FrameImage) else item
            if isinstance(item, FrameImage) and item.camera in self.rings:
                continue  # this camera's frames come from its ring
            with self._lock:
                self._counts["received"] += 1
            messages, errors = to_foxglove(msg)
            for text in errors:
                log.warning("Foxglove bridge: %s frame %s: %s", msg.camera, getattr(msg, "frame_index", "?"), text)
                with self._lock:
                    self._counts["mask_errors"] += 1
            for m in messages:
                self._log(m)

    def _ring_loop(self, camera: str, ring: str) -> None:
        from rtseg.ring import RingError, RingReader

        channel = self._channel_for(image_topic(camera), image_schema(), "protobuf")
        reader = None
        period = 1.0 / self.fps
        next_due = 0.0
        try:
            while not self._stop.is_set():
                if reader is None:
                    try:
                        reader = RingReader(ring, wait_s=0.0)
                    except RingError:
                        self._stop.wait(0.5)
                        continue
                wait = next_due - time.monotonic()
                if wait > 0:
                    self._stop.wait(wait)
                    continue
                try:
                    rf = reader.latest(timeout_s=0.2)
                except (RingError, OSError, ValueError) as e:
                    log.warning("Foxglove bridge: reading ring %r failed (%s); attaching again", ring, e)
                    reader.close()
                    reader = None
                    continue
                if rf is None:
                    continue
                next_due = time.monotonic() + period
                if not channel.has_sinks():
                    continue  # nobody watches this camera: do not encode
                f = rf.frame
                ok, jpeg = cv2.imencode(".jpg", np.ascontiguousarray(f.image[..., ::-1]),
                                        [cv2.IMWRITE_JPEG_QUALITY, int(self.quality)])
                if not ok:
                    continue
                channel.log(compressed_image(camera, jpeg.tobytes(), f.t_wall_ns), log_time=f.t_wall_ns)
                with self._lock:
                    self._counts["ring_frames"] += 1
                    self._counts["logged"] += 1
        finally:
            if reader is not None:
                reader.close()


def bridge_main(cfg: Any, ring_names: dict[str, str], stop_event: Any, heartbeat: Any, log_queue: Any) -> None:
    """The `foxglove` child of `rtseg run` (config section `foxglove:`): frames from the
    pipeline's rings, masks from its publisher. Exits EXIT_FATAL when it cannot serve."""
    from rtseg.proc import EXIT_FATAL, setup_child_logging, stop_on_sigterm
    from rtseg.security import CurveKeyError, pipeline_client

    stop_on_sigterm(stop_event.set)
    setup_child_logging(log_queue, cfg.log_level)
    fx = cfg.foxglove
    if fx.frames == "topic" and not cfg.network.frame_topic.enabled:
        log.warning("foxglove.frames is 'topic' but network.frame_topic.enabled is false: Foxglove gets masks "
                    "without video (enable the frame topic, or use frames: ring on this host)")
    try:
        curve = pipeline_client(cfg.security)
        bridge = FoxgloveBridge(connectable(cfg.network.pub), cameras=[c.id for c in cfg.cameras],
                                rings=ring_names if fx.frames == "ring" else None, host=fx.host, port=fx.port,
                                fps=fx.fps, quality=fx.quality, curve=curve)
        bridge.start()
    except (OSError, CurveKeyError, ValueError) as e:
        log.error("Foxglove bridge cannot run: %s", e)
        raise SystemExit(EXIT_FATAL) from None
    try:
        while not stop_event.is_set():
            heartbeat.value = time.time()
            stop_event.wait(0.25)
    finally:
        bridge.stop()


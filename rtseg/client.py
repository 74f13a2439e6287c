"""Python client: `Subscriber` (decoded masks, frames, status, prompt events) and
`Controller` (prompts and queries over the control socket).

    from rtseg.client import Subscriber, Controller
    with Controller("tcp://127.0.0.1:5556") as ctl:
        ctl.add_points("demo", obj_id=1, points=[[320, 240]], labels=[1])
    for result in Subscriber("tcp://127.0.0.1:5555", cameras=["demo"]):
        print(result.frame_index, result.obj_ids, result.masks.shape, result.boxes)
"""
from __future__ import annotations

import itertools
import logging
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import zmq

from rtseg.protocol import (
    MASKS,
    PROTOCOL_VERSION,
    STATUS,
    TOPIC_KINDS,
    FrameMessage,
    MasksMessage,
    ObjectEvent,
    PromptEvent,
    ProtocolError,
    StatusMessage,
    encode_rle,
    packb,
    unpack,
    unpackb,
)
from rtseg.locate import LocateError, Locator
from rtseg.security import CurveClient

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class Masks:
    """One processed frame, decoded: masks[i] (HxW bool) belongs to obj_ids[i]. Times are
    ns; `*_ns` are monotonic on the segmenter's host, so `received_ns - capture_ns` is the
    end-to-end latency only when the subscriber runs on the same host."""

    camera: str
    frame_index: int
    obj_ids: list[int]
    masks: np.ndarray | None  # (N, H, W) bool; None with Subscriber(decode_masks=False)
    boxes: np.ndarray  # (N, 4) float32 xyxy source pixels
    scores: np.ndarray  # (N,) float32 object-score logits (> 0: visible)
    areas: np.ndarray  # (N,) int64 mask pixels
    width: int
    height: int
    capture_ns: int
    capture_wall_ns: int
    processed_ns: int
    published_ns: int
    received_ns: int
    latency_ms: dict[str, float]
    skipped_total: int
    skipped_since_last: int
    message: MasksMessage  # the wire message (RLE masks) as received
    states: tuple[str | None, ...] = ()  # lifecycle state per object (tracking, occluded, ...)

    @classmethod
    def from_message(cls, msg: MasksMessage, received_ns: int, decode: bool = True) -> Masks:
        n = len(msg.objects)
        masks = None
        if decode:
            masks = np.zeros((n, msg.height, msg.width), bool)
            for i, obj in enumerate(msg.objects):
                masks[i] = obj.mask()
        return cls(msg.camera, msg.frame_index, [o.obj_id for o in msg.objects], masks,
                   np.asarray([o.box for o in msg.objects], np.float32).reshape(n, 4),
                   np.asarray([o.score for o in msg.objects], np.float32),
                   np.asarray([o.area for o in msg.objects], np.int64), msg.width, msg.height, msg.capture_ns,
                   msg.capture_wall_ns, msg.processed_ns, msg.published_ns, received_ns, msg.latency_ms,
                   msg.skipped_total, msg.skipped_since_last, msg, tuple(o.state for o in msg.objects))

    def mask_of(self, obj_id: int) -> np.ndarray:
        if obj_id not in self.obj_ids:
            raise KeyError(f"object {obj_id} is not in frame {self.frame_index}; objects: {self.obj_ids}")
        return self.message.objects[self.obj_ids.index(obj_id)].mask()


@dataclass(frozen=True, eq=False)
class FrameImage:
    """A frame from the frame.<camera> topic, decoded to HxWx3 uint8 RGB."""

    camera: str
    frame_index: int
    image: np.ndarray
    capture_ns: int
    capture_wall_ns: int
    received_ns: int
    message: FrameMessage


Received = Masks | FrameImage | StatusMessage | PromptEvent | ObjectEvent


class Subscriber:
    """Subscribe to `topics` ("masks", "frame", "prompt", "event", "status") of `cameras` (None: all).
    Iterating blocks and yields decoded results; `recv(timeout)` returns None on timeout.
    Messages lost on the way (slow reader, network) show up in `stats()["dropped"]`."""

    def __init__(self, endpoint: str | None, cameras: Iterable[str] | None = None, topics: Sequence[str] = (MASKS,), *,
                 curve: CurveClient | None = None, decode_masks: bool = True, rcvhwm: int = 100,
                 context: zmq.Context | None = None, cluster: str | None = None, follow_s: float = 1.0):
        unknown = [t for t in topics if t not in TOPIC_KINDS]
        if unknown or not topics:
            raise ValueError(f"unknown topic(s) {unknown}; choose from {list(TOPIC_KINDS)}")
        if (endpoint is None) == (cluster is None):
            raise ValueError("give either an endpoint or cluster=ADDR (the directory of `rtseg cluster`)")
        self.endpoint = endpoint
        # cluster: connect to where the directory says each camera publishes, and ask again
        # whenever nothing arrived for follow_s seconds (the camera may have moved)
        self._locator = None if cluster is None else Locator(cluster, context=context)
        self.follow_s = follow_s
        self._located: dict[str, str] = {}  # camera -> pub endpoint connected to
        self._heard: dict[str, float] = {}  # camera -> time.monotonic() of its last message
        self._last_located = 0.0
        self.cameras = None if cameras is None else set(cameras)
        self.topics = set(topics)
        self.decode_masks = decode_masks
        self._last_seq: dict[bytes, int] = {}
        self._stats: Counter[str] = Counter()
        self._socket = (context or zmq.Context.instance()).socket(zmq.SUB)
        self._socket.linger = 0
        self._socket.rcvhwm = rcvhwm
        if curve is not None:
            curve.secure(self._socket)
        for kind in self.topics:
            if kind == STATUS:
                self._socket.subscribe(b"status")
            elif self.cameras is None:
                self._socket.subscribe(f"{kind}.".encode())
            else:
                for cam in self.cameras:
                    self._socket.subscribe(f"{kind}.{cam}".encode())
        if endpoint is not None:
            self._socket.connect(endpoint)
        else:
            self._follow()

    def _follow(self) -> None:
        """Cluster: connect to each camera's current publisher, drop publishers no longer used."""
        self._last_located = time.monotonic()
        try:
            if self.cameras is None:
                where = self._locator.endpoints()
            else:
                where = {}
                for cam in sorted(self.cameras):
                    where.update(self._locator.endpoints(cam))
        except LocateError as e:
            log.warning("subscriber: %s", e)
            return
        old, new = set(self._located.values()), set(where.values())
        for ep in old - new:
            self._socket.disconnect(ep)
        for ep in new - old:
            self._socket.connect(ep)
        if old and old != new:
            log.info("subscriber: following cameras to %s", sorted(new))
        self._located = where

    def _silent(self) -> bool:
        """Cluster: some wanted camera sent nothing for follow_s (and we did not just ask)."""
        now = time.monotonic()
        if now - self._last_located < self.follow_s:
            return False
        cameras = set(self._located) | (self.cameras or set())
        return not cameras or any(now - self._heard.get(c, 0.0) >= self.follow_s for c in cameras)

    def recv(self, timeout: float | None = None) -> Received | None:
        """The next wanted message, or None when `timeout` seconds pass without one."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining_ms = -1 if deadline is None else max(0, int(1000 * (deadline - time.monotonic())))
            if self._locator is not None:  # wake up to ask the directory again after follow_s of silence
                if self._silent():
                    self._follow()
                slice_ms = int(1000 * self.follow_s)
                remaining_ms = slice_ms if remaining_ms < 0 else min(remaining_ms, slice_ms)
            if not self._socket.poll(remaining_ms, zmq.POLLIN):
                if deadline is not None and time.monotonic() >= deadline:
                    return None
                continue
            parts = self._socket.recv_multipart()
            received_ns = time.monotonic_ns()
            result = self._decode(parts, received_ns)
            if result is not None:
                camera = getattr(result, "camera", None)
                if camera:
                    self._heard[camera] = time.monotonic()
                return result
            if deadline is not None and time.monotonic() >= deadline:
                return None

    def __iter__(self) -> Iterator[Received]:
        while True:
            result = self.recv()
            if result is not None:
                yield result

    def stats(self) -> dict[str, int]:
        """received, dropped (gaps in the publisher's per-topic seq), decode_errors."""
        return {"received": 0, "dropped": 0, "decode_errors": 0, **self._stats}

    def close(self) -> None:
        self._socket.close(linger=0)
        if self._locator is not None:
            self._locator.close()

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _decode(self, parts: list[bytes], received_ns: int) -> Received | None:
        topic = parts[0]
        kind, _, camera = topic.decode("utf-8", "replace").partition(".")
        if kind not in self.topics or (kind != STATUS and self.cameras is not None and camera not in self.cameras):
            return None  # a prefix match such as masks.cam10 for masks.cam1
        try:
            msg = unpack(parts)
            self._count_gap(topic, msg.seq)
            self._stats["received"] += 1
            if isinstance(msg, MasksMessage):
                return Masks.from_message(msg, received_ns, self.decode_masks)
            if isinstance(msg, FrameMessage):
                return FrameImage(msg.camera, msg.frame_index, msg.image(), msg.capture_ns, msg.capture_wall_ns,
                                  received_ns, msg)
            return msg
        except (ProtocolError, ValueError) as e:
            self._stats["decode_errors"] += 1
            log.warning("subscriber: dropping an undecodable %r message: %s", topic, e)
            return None

    def _count_gap(self, topic: bytes, seq: int) -> None:
        last = self._last_seq.get(topic)
        if last is not None and seq > last + 1:
            self._stats["dropped"] += seq - last - 1
        self._last_seq[topic] = seq  # a lower seq means the publisher restarted: start over


class ControlError(RuntimeError):
    """The segmenter refused a request: `code` (see docs/PROTOCOL.md), `message`, `field`."""

    def __init__(self, reply: dict[str, Any]):
        error = reply.get("error") or {}
        self.code: str = error.get("code", "unknown")
        self.message: str = error.get("message", repr(reply))
        self.field: str | None = error.get("field")
        self.reply = reply
        super().__init__(f"{reply.get('type') or 'request'} refused [{self.code}]: {self.message}")


class ControlTimeout(TimeoutError):
    """No reply in time; the request may or may not have been applied."""


def _plain(value: Any) -> Any:
    """numpy arrays and scalars -> lists and Python numbers, for msgpack."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


class Controller:
    """Send control requests and wait up to `timeout` seconds for each reply. Methods return
    the reply dict and raise ControlError (refused) or ControlTimeout (no answer). A request
    that timed out is not resent: adding points twice would add two clicks."""

    def __init__(self, endpoint: str | None, timeout: float = 5.0, *, curve: CurveClient | None = None,
                 context: zmq.Context | None = None, cluster: str | None = None):
        if (endpoint is None) == (cluster is None):
            raise ValueError("give either an endpoint or cluster=ADDR (the directory of `rtseg cluster`)")
        self.endpoint = endpoint
        self.timeout = timeout
        self._curve = curve
        self._context = context or zmq.Context.instance()
        self._ids = itertools.count(1)
        # cluster: every request goes to where the directory says its camera runs right now;
        # a request without a camera (list, status) goes to every segmenter, replies merged
        self._locator = None if cluster is None else Locator(cluster, timeout=timeout, context=self._context)
        self._sockets: dict[str, zmq.Socket] = {}

    def _connect(self, endpoint: str) -> zmq.Socket:
        sock = self._context.socket(zmq.REQ)
        sock.linger = 0
        if self._curve is not None:
            self._curve.secure(sock)
        sock.connect(endpoint)
        return sock

    def request(self, request_type: str, **fields: Any) -> dict[str, Any]:
        """Send {"v", "type", "id", **fields} (None fields left out) and return the reply."""
        request_id = next(self._ids)
        body = {"v": PROTOCOL_VERSION, "type": request_type, "id": request_id,
                **{k: _plain(v) for k, v in fields.items() if v is not None}}
        if self._locator is None:
            return self._exchange(self.endpoint, body)
        if body.get("camera") is not None:
            return self._exchange(self._control_of(body["camera"], request_type), body)
        replies = [self._exchange(ep, body) for ep in sorted(set(self._located("control").values()))]
        merged = dict(replies[0]) if replies else {"v": PROTOCOL_VERSION, "ok": True, "type": request_type,
                                                    "id": request_id}
        merged["cameras"] = {cam: v for r in replies for cam, v in (r.get("cameras") or {}).items()}
        return merged

    def _located(self, which: str, camera: str | None = None) -> dict[str, str]:
        try:
            return self._locator.endpoints(camera, which)
        except LocateError as e:
            if e.code == "timeout":
                raise ControlTimeout(str(e)) from None
            raise ControlError({"type": "locate", "error": {"code": e.code, "message": str(e)}}) from None

    def _control_of(self, camera: str, request_type: str) -> str:
        endpoint = self._located("control", camera).get(camera)
        if endpoint is None:
            state = self._locator.locate(camera)[camera].get("state")
            raise ControlError({"type": request_type, "error": {
                "code": "not_ready", "message": f"camera {camera!r} is {state} in the cluster; retry"}})
        return endpoint

    def _exchange(self, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
        request_type = body["type"]
        sock = self._sockets.get(endpoint) or self._sockets.setdefault(endpoint, self._connect(endpoint))
        sock.send(packb(body))
        if not sock.poll(int(self.timeout * 1000), zmq.POLLIN):
            sock.close(linger=0)  # a REQ socket is stuck after a lost reply: start afresh
            del self._sockets[endpoint]
            raise ControlTimeout(f"no reply to {request_type} from {endpoint} within {self.timeout} s: is "
                                 f"the segmenter running there (and are the CURVE keys accepted)? "
                                 f"The request may still be applied.")
        try:
            reply = unpackb(sock.recv())
        except Exception as e:
            reply = f"undecodable reply ({e})"
        if not isinstance(reply, dict):
            raise ControlError({"type": request_type, "error": {"code": "bad_reply", "message": f"{reply!r:.200}"}})
        if not reply.get("ok"):
            raise ControlError(reply)
        return reply

    def add_points(self, camera: str, obj_id: int, points: Any, labels: Any = None,
                   frame_index: int | None = None) -> dict[str, Any]:
        """Click(s) [[x, y], ...] in source pixels; labels 1 (object) / 0 (background),
        default all 1. The reply's frame_index / applied_to say where it was applied."""
        points = _plain(points)
        if labels is None:
            labels = [1] * len(points)
        return self.request("add_points", camera=camera, obj_id=obj_id, points=points, labels=labels,
                            frame_index=frame_index)

    def add_box(self, camera: str, obj_id: int, box: Any, frame_index: int | None = None) -> dict[str, Any]:
        """A box [x0, y0, x1, y1] in source pixels."""
        return self.request("add_box", camera=camera, obj_id=obj_id, box=box, frame_index=frame_index)

    def add_mask(self, camera: str, obj_id: int, mask: Any, frame_index: int | None = None) -> dict[str, Any]:
        """An HxW bool mask at the camera's resolution (or a COCO RLE dict)."""
        rle = mask if isinstance(mask, dict) else encode_rle(np.asarray(mask, dtype=bool))
        return self.request("add_mask", camera=camera, obj_id=obj_id, mask=rle, frame_index=frame_index)

    def remove(self, camera: str, obj_id: int) -> dict[str, Any]:
        return self.request("remove", camera=camera, obj_id=obj_id)

    def reset(self, camera: str) -> dict[str, Any]:
        """Drop every object of the camera."""
        return self.request("reset", camera=camera)

    def status(self, camera: str | None = None) -> dict[str, Any]:
        return self.request("status", camera=camera)

    def close(self) -> None:
        for sock in self._sockets.values():
            sock.close(linger=0)
        self._sockets.clear()
        if self._locator is not None:
            self._locator.close()

    def __enter__(self) -> Controller:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def list(self, camera: str | None = None) -> dict[str, Any]:
        """{"cameras": {id: {"obj_ids": [...], "frame_size": [h, w] | None}}}."""
        return self.request("list", camera=camera)

"""The control socket: validated requests in, one reply each out, never an exception out.

A ROUTER socket (REQ and DEALER clients alike, many at once). `ControlServer.poll_once`
services pending requests from the caller's own loop, so the model is only ever touched by
the thread that owns it. Every request is checked by `validate_request` before the handler
sees it; a bad one gets an error reply naming the field and value, and changes nothing.

Reacts to: add_points, add_box, add_mask, add_boxes, remove, reset, list, status (docs/PROTOCOL.md).
Emits: a reply per request; with a `publisher`, a PromptEvent on `prompt.<camera>` after
every applied add_points / add_box / add_mask / remove / reset, and one `add_box` event per
object an add_boxes request added.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Collection, Protocol

import numpy as np
import zmq

from rtseg.protocol import (
    PROTOCOL_VERSION,
    PromptEvent,
    RLEError,
    StatusMessage,
    decode_rle,
    encode_rle,
    packb,
    unpackb,
)

from rtseg.security import bind_server_socket

if TYPE_CHECKING:
    from rtseg.config import NetworkConfig
    from rtseg.pipeline.publisher import Publisher
    from rtseg.security import CurveServer

log = logging.getLogger(__name__)

__all__ = ["ControlHandler", "ControlServer", "ErrorCode", "RequestError", "ValidatedRequest",
           "prompt_reply", "status_reply", "error_reply", "validate_request", "REQUEST_TYPES"]


REQUEST_TYPES = ("add_points", "add_box", "add_mask", "add_boxes", "remove", "reset", "list", "status")
PROMPT_TYPES = frozenset({"add_points", "add_box", "add_mask"})
MUTATING_TYPES = PROMPT_TYPES | {"add_boxes", "remove", "reset"}
_COMMON_FIELDS = {"v", "type", "id", "camera"}
_FIELDS = {
    "add_points": {"obj_id", "points", "labels", "frame_index"},
    "add_box": {"obj_id", "box", "frame_index"},
    "add_mask": {"obj_id", "mask", "frame_index"},
    "add_boxes": {"boxes", "only_new", "frame_index"},
    "remove": {"obj_id"},
    "reset": set(),
    "list": set(),
    "status": set(),
}
_REQUIRED = {"add_points": ("camera", "obj_id", "points", "labels"), "add_box": ("camera", "obj_id", "box"),
             "add_mask": ("camera", "obj_id", "mask"), "add_boxes": ("camera", "boxes"),
             "remove": ("camera", "obj_id"), "reset": ("camera",)}
MAX_POINTS = 256
MAX_BOXES = 256
MAX_OBJ_ID = 2**31 - 1
MAX_ECHOED_TYPE = 64  # an error reply echoes a request's type string up to this long


class ErrorCode:
    BAD_ENCODING = "bad_encoding"  # not msgpack
    BAD_REQUEST = "bad_request"  # not a map, missing or unknown field, bad framing
    PAYLOAD_TOO_LARGE = "payload_too_large"  # over network.max_request_bytes
    UNSUPPORTED_VERSION = "unsupported_version"
    UNKNOWN_TYPE = "unknown_type"
    UNKNOWN_CAMERA = "unknown_camera"
    INVALID_VALUE = "invalid_value"  # wrong type, NaN/inf, out of frame, bad label/box/mask
    UNKNOWN_OBJECT = "unknown_object"
    NOT_READY = "not_ready"  # the camera has no frame yet: retry
    HANDLER_ERROR = "handler_error"  # the segmenter failed on a valid request


class RequestError(Exception):
    """A refused request; becomes `{"ok": false, "error": {"code", "message", "field"}}`."""

    def __init__(self, code: str, message: str, *, field: str | None = None,
                 request_type: str | None = None, request_id: Any = None):
        super().__init__(message)
        self.code, self.message, self.field = code, message, field
        self.request_type, self.request_id = request_type, request_id


@dataclass(frozen=True, eq=False)
class ValidatedRequest:
    """A request that passed every check. Coordinates are source pixels of `camera`'s
    current frame size; `mask` is decoded HxW bool, `mask_rle` the same as COCO RLE."""

    type: str
    camera: str | None
    obj_id: int | None = None
    frame_index: int | None = None  # the frame the user clicked on; None: the latest
    points: np.ndarray | None = None  # (P, 2) float32 x, y
    labels: np.ndarray | None = None  # (P,) int32: 1 positive, 0 negative
    box: np.ndarray | None = None  # (4,) float32 x0, y0, x1, y1
    mask: np.ndarray | None = None  # (H, W) bool
    mask_rle: dict[str, Any] | None = None
    request_id: Any = None
    boxes: np.ndarray | None = None  # add_boxes: (N, 4) float32 x0, y0, x1, y1
    only_new: bool = True  # add_boxes: add only boxes that match no tracked object

    @property
    def kind(self) -> str | None:
        """"points", "box" or "mask" for a prompt (the prompt log's kind), else None."""
        return {"add_points": "points", "add_box": "box", "add_mask": "mask"}.get(self.type)

    def prompt_payload(self) -> dict[str, Any]:
        """The prompt as plain JSON/msgpack values, for the prompt log and prompt events."""
        if self.points is not None and self.labels is not None:
            return {"points": self.points.tolist(), "labels": self.labels.tolist()}
        if self.box is not None:
            return {"box": self.box.tolist()}
        if self.mask_rle is not None:
            return {"mask": self.mask_rle}
        return {}


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def _invalid(field: str, message: str) -> RequestError:
    return RequestError(ErrorCode.INVALID_VALUE, message, field=field)


def _integer(value: Any, field: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid(field, f"{field} must be an integer, got {_describe(value)}")
    if not lo <= value <= hi:
        raise _invalid(field, f"{field} must be in [{lo}, {hi}], got {value}")
    return value


def _coordinates(value: Any, field: str, n: int) -> list[float]:
    """A list of n finite numbers."""
    if not isinstance(value, list | tuple) or len(value) != n:
        raise _invalid(field, f"{field} must be a list of {n} numbers, got {_describe(value)}")
    for v in value:
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise _invalid(field, f"{field} must hold finite numbers, got {_describe(value)}")
    return [float(v) for v in value]  # float32 later: in-frame checks still hold (rounding is monotonic)


def _in_frame(xs: list[float], ys: list[float], field: str, value: Any, hw: tuple[int, int]) -> None:
    h, w = hw
    if min(xs) < 0 or max(xs) > w or min(ys) < 0 or max(ys) > h:
        raise _invalid(field, f"{field} {_describe(value)} lies outside the {w}x{h} frame: "
                              f"x must be in [0, {w}], y in [0, {h}]")


def _frame_size(handler: ControlHandler, camera: str) -> tuple[int, int]:
    size = handler.frame_size(camera)
    if size is None:
        raise RequestError(ErrorCode.NOT_READY, f"camera {camera!r} has no frame yet; retry once it streams")
    return int(size[0]), int(size[1])


def _decode(data: bytes, max_request_bytes: int) -> dict[str, Any]:
    if len(data) > max_request_bytes:
        raise RequestError(ErrorCode.PAYLOAD_TOO_LARGE, f"request of {len(data)} bytes is over the limit of "
                           f"{max_request_bytes} (network.max_request_bytes); send a smaller mask or fewer points")
    try:
        raw = unpackb(data)
    except Exception as e:
        raise RequestError(ErrorCode.BAD_ENCODING, f"request is not msgpack ({type(e).__name__}: "
                           f"{_describe(str(e))}); encode a map with msgpack") from None
    if not isinstance(raw, dict):
        raise RequestError(ErrorCode.BAD_REQUEST, f"request must be a msgpack map, got {type(raw).__name__}")
    return raw


def validate_request(data: bytes, handler: ControlHandler, max_request_bytes: int) -> ValidatedRequest:
    """Check a request body completely; raises RequestError naming the field and the value."""
    raw = _decode(data, max_request_bytes)
    rtype = raw.get("type")
    echo = rtype if isinstance(rtype, str) and len(rtype) <= MAX_ECHOED_TYPE else None  # the reply's "type"
    request_id = raw.get("id")
    if request_id is not None and not (isinstance(request_id, int | str) and len(str(request_id)) <= 256):
        raise RequestError(ErrorCode.BAD_REQUEST, f"id must be an int or a short string, got {_describe(request_id)}",
                           field="id", request_type=echo)
    if raw.get("v") != PROTOCOL_VERSION:
        raise RequestError(ErrorCode.UNSUPPORTED_VERSION, f"request has protocol version {_describe(raw.get('v'))}; "
                           f"this segmenter speaks v={PROTOCOL_VERSION}", field="v", request_type=echo,
                           request_id=request_id)
    if rtype not in REQUEST_TYPES:
        raise RequestError(ErrorCode.UNKNOWN_TYPE, f"unknown request type {_describe(rtype)}; "
                           f"one of {list(REQUEST_TYPES)}", field="type", request_type=echo, request_id=request_id)
    try:
        return _validate_fields(raw, rtype, handler)
    except RequestError as e:
        e.request_type, e.request_id = rtype, request_id
        raise


def _validate_fields(raw: dict[str, Any], rtype: str, handler: ControlHandler) -> ValidatedRequest:
    unknown = sorted(set(raw) - _COMMON_FIELDS - _FIELDS[rtype])
    if unknown:
        raise RequestError(ErrorCode.BAD_REQUEST, f"{rtype} does not take field(s) {unknown}; "
                           f"it takes {sorted(_FIELDS[rtype] | {'camera'})}", field=unknown[0])
    for name in _REQUIRED.get(rtype, ()):
        if raw.get(name) is None:
            raise RequestError(ErrorCode.BAD_REQUEST, f"{rtype} needs field {name!r}", field=name)
    camera = raw.get("camera")
    if camera is not None:
        cameras = handler.cameras()
        if not isinstance(camera, str) or camera not in cameras:
            raise RequestError(ErrorCode.UNKNOWN_CAMERA, f"unknown camera {_describe(camera)}; "
                               f"cameras: {sorted(cameras)}", field="camera")
    obj_id = _integer(raw["obj_id"], "obj_id", 0, MAX_OBJ_ID) if "obj_id" in _FIELDS[rtype] else None
    frame_index = raw.get("frame_index")
    if frame_index is not None:
        frame_index = _integer(frame_index, "frame_index", 0, 2**63 - 1)
    common = {"type": rtype, "camera": camera, "obj_id": obj_id, "frame_index": frame_index,
              "request_id": raw.get("id")}
    if rtype == "remove" and obj_id not in handler.known_objects(camera):  # type: ignore[arg-type]
        raise RequestError(ErrorCode.UNKNOWN_OBJECT, f"camera {camera!r} has no object {obj_id}; objects: "
                           f"{sorted(handler.known_objects(camera))}", field="obj_id")  # type: ignore[arg-type]
    if rtype == "add_points":
        return ValidatedRequest(**common, **_points(raw["points"], raw["labels"], _frame_size(handler, camera)))
    if rtype == "add_box":
        return ValidatedRequest(**common, box=_box(raw["box"], _frame_size(handler, camera)))
    if rtype == "add_boxes":
        only_new = raw.get("only_new", True)
        if not isinstance(only_new, bool):
            raise _invalid("only_new", f"only_new must be true or false, got {_describe(only_new)}")
        return ValidatedRequest(**common, boxes=_boxes(raw["boxes"], _frame_size(handler, camera)), only_new=only_new)
    if rtype == "add_mask":
        mask, rle = _mask(raw["mask"], camera, _frame_size(handler, camera))  # type: ignore[arg-type]
        return ValidatedRequest(**common, mask=mask, mask_rle=rle)
    return ValidatedRequest(**common)


def _points(points: Any, labels: Any, hw: tuple[int, int]) -> dict[str, np.ndarray]:
    if not isinstance(points, list | tuple) or not 1 <= len(points) <= MAX_POINTS:
        raise _invalid("points", f"points must be a list of 1..{MAX_POINTS} [x, y] pairs, got {_describe(points)}")
    xy = [_coordinates(p, f"points[{i}]", 2) for i, p in enumerate(points)]
    for i, (x, y) in enumerate(xy):
        _in_frame([x], [y], f"points[{i}]", points[i], hw)
    if not isinstance(labels, list | tuple) or len(labels) != len(points):
        raise _invalid("labels", f"need one label per point: {len(points)} point(s), labels={_describe(labels)}")
    if not all(type(v) is int and v in (0, 1) for v in labels):
        raise _invalid("labels", f"labels must be 1 (positive) or 0 (negative), got {_describe(labels)}")
    return {"points": np.asarray(xy, np.float32), "labels": np.asarray(labels, np.int32)}


def _box(box: Any, hw: tuple[int, int], field: str = "box") -> np.ndarray:
    x0, y0, x1, y1 = np.asarray(_coordinates(box, field, 4), np.float32).tolist()  # check what the engine gets
    if x1 <= x0 or y1 <= y0:
        raise _invalid(field, f"{field} {_describe(box)} is empty or inverted: need [x0, y0, x1, y1] with x1 > x0, "
                              f"y1 > y0")
    _in_frame([x0, x1], [y0, y1], field, box, hw)
    return np.asarray([x0, y0, x1, y1], np.float32)


def _boxes(boxes: Any, hw: tuple[int, int]) -> np.ndarray:
    if not isinstance(boxes, list | tuple) or not 1 <= len(boxes) <= MAX_BOXES:
        raise _invalid("boxes", f"boxes must be a list of 1..{MAX_BOXES} [x0, y0, x1, y1], got {_describe(boxes)}")
    return np.stack([_box(b, hw, f"boxes[{i}]") for i, b in enumerate(boxes)])


def _mask(rle: Any, camera: str, hw: tuple[int, int]) -> tuple[np.ndarray, dict[str, Any]]:
    if isinstance(rle, dict) and rle.get("size") != list(hw):
        raise _invalid("mask", f"mask size {_describe(rle.get('size'))} does not match camera {camera!r}'s "
                               f"frame [height, width] = {list(hw)}")
    try:
        mask = decode_rle(rle)
    except RLEError as e:
        raise _invalid("mask", f"mask: {e}") from None
    if not mask.any():
        raise _invalid("mask", "mask is empty: mark at least one pixel of the object")
    return mask, encode_rle(mask)


class ControlHandler(Protocol):
    """What the segmenter implements. Validation calls the first three; `handle` only ever
    gets a ValidatedRequest. Raise RequestError(code, message, field=...) to refuse a request
    (ErrorCode.NOT_READY; ErrorCode.INVALID_VALUE for an engine PromptError such as a prompt
    before the object's first frame); any other exception becomes a `handler_error` reply."""

    def cameras(self) -> Collection[str]:
        """The camera ids this segmenter serves."""

    def frame_size(self, camera: str) -> tuple[int, int] | None:
        """(height, width) of the camera's latest frame; None before its first frame."""

    def known_objects(self, camera: str) -> Collection[int]:
        """The object ids currently tracked on the camera."""

    # optional: `zones(camera) -> [{"name", "polygon", "min_overlap"}]` adds the camera's zones to `list`

    def handle(self, request: ValidatedRequest) -> dict[str, Any]:
        """Apply the request; return the reply fields (for prompts: `prompt_reply(...)`;
        for status: the StatusMessage fields). `list` is answered by the server itself."""


def check_frame_index(camera: str, requested: int | None, latest: int) -> None:
    """Refuse a prompt for a frame newer than the camera's latest tracked frame (nobody has seen
    it yet): applied to the latest instead, it would land on a frame the user never looked at."""
    if requested is not None and requested > latest:
        raise _invalid("frame_index", f"frame_index {requested} is newer than the latest tracked frame {latest} of "
                                      f"camera {camera!r}: give the frame_index of a masks message you were shown, "
                                      "or leave it out for the latest frame")


def prompt_reply(*, frame_index: int, requested_frame_index: int | None, obj_ids: Collection[int],
                 obj: dict[str, Any] | None = None) -> dict[str, Any]:
    """The reply fields of an applied prompt. `frame_index` is the frame the prompt went to:
    the requested one if the engine still held it, else the latest (`applied_to` says which);
    `obj_ids` the camera's objects afterwards; `obj` optionally {"score", "box", "area"} of the
    prompted object on that frame."""
    applied_to = "requested" if requested_frame_index is not None and frame_index == requested_frame_index else "latest"
    reply: dict[str, Any] = {"frame_index": int(frame_index), "requested_frame_index": requested_frame_index,
                             "applied_to": applied_to, "obj_ids": sorted(int(i) for i in obj_ids)}
    if obj is not None:
        reply["object"] = obj
    return reply


def status_reply(status: StatusMessage) -> dict[str, Any]:
    """The reply fields of a `status` request: the same fields as the status topic's body."""
    return status._body()[0]


def error_reply(err: RequestError, request_type: Any = None, request_id: Any = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": err.code, "message": err.message}
    if err.field is not None:
        error["field"] = err.field
    return {"v": PROTOCOL_VERSION, "ok": False, "type": request_type, "id": request_id, "error": error}


class ControlServer:
    """Binds a ROUTER socket at `endpoint` ("tcp://127.0.0.1:*" picks a free port; see
    `.endpoint`). Not thread-safe: call poll_once/serve from one thread."""

    def __init__(self, endpoint: str, handler: ControlHandler, *, max_request_bytes: int = 16 * 1024 * 1024,
                 curve: CurveServer | None = None, context: zmq.Context | None = None,
                 publisher: Publisher | None = None, max_batch: int = 16):
        self.handler = handler
        self.max_request_bytes = int(max_request_bytes)
        self.publisher = publisher
        self.max_batch = max_batch
        self.stats: Counter[str] = Counter()  # "requests", "ok", and one count per error code
        # A peer that sends far more than the limit is disconnected by libzmq (no reply);
        # up to twice the limit it gets a payload_too_large reply.
        self._socket, self.endpoint = bind_server_socket(
            zmq.ROUTER, endpoint, curve=curve, context=context, what="control socket",
            config_key="network.control", options={zmq.MAXMSGSIZE: 2 * self.max_request_bytes})
        log.info("control socket on %s%s", self.endpoint, " (CURVE)" if curve else "")

    @classmethod
    def from_config(cls, network: NetworkConfig, handler: ControlHandler, *, curve: CurveServer | None = None,
                    context: zmq.Context | None = None, publisher: Publisher | None = None) -> ControlServer:
        return cls(network.control, handler, max_request_bytes=network.max_request_bytes, curve=curve,
                   context=context, publisher=publisher)

    def poll_once(self, timeout_ms: int = 0) -> int:
        """Wait up to timeout_ms for a request, then answer every request already waiting
        (at most max_batch). Returns how many were answered. Never raises on bad input."""
        if not self._socket.poll(timeout_ms, zmq.POLLIN):
            return 0
        answered = 0
        while answered < self.max_batch:
            try:
                frames = self._socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            self._answer(frames)
            answered += 1
        return answered

    def serve(self, stop: threading.Event, poll_ms: int = 50) -> None:
        """Answer requests until `stop` is set (for a dedicated thread or tests)."""
        while not stop.is_set():
            self.poll_once(poll_ms)

    def close(self) -> None:
        self._socket.close(linger=0)

    def __enter__(self) -> ControlServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ internals
    def _answer(self, frames: list[bytes]) -> None:
        split = frames.index(b"") + 1 if b"" in frames else 1  # REQ peers add an empty delimiter
        envelope, body = frames[:split], frames[split:]
        started = time.perf_counter()
        reply = self._reply_to(body)
        try:
            payload = packb(reply)
        except Exception as e:  # the handler returned something msgpack cannot hold
            log.error("control: reply to %s is not serializable (%s); the request was applied", reply.get("type"), e)
            payload = packb(error_reply(RequestError(ErrorCode.HANDLER_ERROR, f"reply not serializable: {e}"),
                                        reply.get("type"), reply.get("id")))
        self.stats["requests"] += 1
        self.stats["ok" if reply.get("ok") else reply["error"]["code"]] += 1
        try:
            self._socket.send_multipart([*envelope, payload], zmq.NOBLOCK)
        except zmq.ZMQError as e:  # peer gone or its queue full: the reply is lost, not us
            log.warning("control: could not send a reply (%s)", e)
        log.debug("control: %s -> %s in %.1f ms", reply.get("type"), "ok" if reply.get("ok") else
                  reply["error"]["code"], 1e3 * (time.perf_counter() - started))

    def _reply_to(self, body: list[bytes]) -> dict[str, Any]:
        request_type = request_id = None
        try:
            if len(body) != 1:
                raise RequestError(ErrorCode.BAD_REQUEST, f"a request is one msgpack frame; got {len(body)} frames")
            request = validate_request(body[0], self.handler, self.max_request_bytes)
            request_type, request_id = request.type, request.request_id
            before: list[int] = []
            if request.type == "reset":
                before = sorted(int(i) for i in self.handler.known_objects(request.camera))  # type: ignore[arg-type]
            if request.type == "list":
                fields = self._list(request.camera)
            else:
                fields = self.handler.handle(request)
                if not isinstance(fields, dict):
                    raise TypeError(f"handler returned {type(fields).__name__}, not a dict")
            reply: dict[str, Any] = {"v": PROTOCOL_VERSION, "ok": True, "type": request.type, "id": request.request_id}
            reply.update((k, v) for k, v in fields.items() if k not in reply)
            if request.type in MUTATING_TYPES:  # the documented fields, whatever the handler returned
                reply.setdefault("camera", request.camera)
                if request.obj_id is not None:
                    reply.setdefault("obj_id", request.obj_id)
                if "obj_ids" not in reply:
                    reply["obj_ids"] = sorted(int(i) for i in self.handler.known_objects(request.camera))  # type: ignore[arg-type]
                if request.type == "reset":
                    reply.setdefault("removed", before)
                self._publish_event(request, reply)
            return reply
        except RequestError as e:
            request_type = e.request_type or request_type
            request_id = e.request_id if e.request_id is not None else request_id
            return error_reply(e, request_type, request_id)
        except Exception as e:
            log.exception("control: the handler failed on a %s request", request_type)
            return error_reply(RequestError(ErrorCode.HANDLER_ERROR, f"{type(e).__name__}: {e}"),
                               request_type, request_id)

    def _list(self, camera: str | None) -> dict[str, Any]:
        cameras = [camera] if camera is not None else sorted(self.handler.cameras())
        out = {}
        for cam in cameras:
            size = self.handler.frame_size(cam)
            out[cam] = {"obj_ids": sorted(int(i) for i in self.handler.known_objects(cam)),
                        "frame_size": list(size) if size is not None else None}
            zones = getattr(self.handler, "zones", None)  # optional: handlers without zones leave it out
            if zones is not None:
                out[cam]["zones"] = zones(cam)
        return {"cameras": out}

    def _publish_event(self, request: ValidatedRequest, reply: dict[str, Any]) -> None:
        if self.publisher is None:
            return
        try:
            prompt = request.prompt_payload() if request.type in PROMPT_TYPES else {}
            obj_ids = reply.get("obj_ids", self.handler.known_objects(request.camera))  # type: ignore[arg-type]
            ops = [(request.type, request.obj_id, prompt)]
            if request.type == "add_boxes":  # one add_box event per added object, as if sent one by one
                ops = [("add_box", d["obj_id"], {"box": request.boxes[k].tolist()})  # type: ignore[index]
                       for k, d in enumerate(reply.get("boxes", [])) if d.get("status") == "added"]
            for op, obj_id, payload in ops:
                self.publisher.publish(PromptEvent(
                    camera=request.camera, op=op, obj_id=obj_id,  # type: ignore[arg-type]
                    frame_index=reply.get("frame_index"), requested_frame_index=request.frame_index,
                    prompt=payload, obj_ids=tuple(int(i) for i in obj_ids), t_wall_ns=time.time_ns()))
        except Exception:
            log.exception("control: could not publish the prompt event of a %s request", request.type)

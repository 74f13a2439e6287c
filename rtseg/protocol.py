"""The rtseg wire protocol: topics, message schemas, version, pack/unpack, mask encodings.

Every published message is a ZeroMQ multipart `[topic, msgpack body, *raw parts]` whose body
starts with the header `{"v": PROTOCOL_VERSION, "type", "camera", "seq", "published_ns"}`.
`pack(msg)` builds every part before anything is sent, so a failure never leaves half a
message on the wire. docs/PROTOCOL.md is the reference; this module is its implementation.

Topics (subscribe by prefix; ZeroMQ prefix matching means `masks.cam1` also matches
`masks.cam10`, so receivers compare the exact topic, as `rtseg.client.Subscriber` does):
  masks.<camera>   MasksMessage: per processed frame, the objects with COCO RLE masks
  frame.<camera>   FrameMessage: the frame as JPEG (optional, rate-limited), raw third part
  prompt.<camera>  PromptEvent: a prompt / remove / reset the segmenter applied
  event.<camera>   ObjectEvent: an object appeared, was occluded, reappeared, was lost or
                   removed, entered or left a zone
  status           StatusMessage: once a second, the whole pipeline
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, Sequence

import msgpack
import numpy as np
from pycocotools import mask as coco_mask

PROTOCOL_VERSION = 1
# Where a segmenter publishes and listens by default (NetworkConfig's defaults; clients connect here).
DEFAULT_PUB = "tcp://127.0.0.1:5555"
DEFAULT_CONTROL = "tcp://127.0.0.1:5556"

MASKS, FRAME, PROMPT, STATUS, EVENT = "masks", "frame", "prompt", "status", "event"
TOPIC_KINDS = (MASKS, FRAME, PROMPT, STATUS, EVENT)
# object lifecycle states in masks messages, and the events of the event topic
OBJECT_STATES = ("tracking", "occluded", "lost", "reacquired", "removed")
EVENT_KINDS = ("appeared", "occluded", "reappeared", "lost", "removed", "entered_zone", "left_zone")


class ProtocolError(ValueError):
    """A message that does not follow the protocol; the message names the field and value."""


def topic_for(kind: str, camera: str | None = None) -> bytes:
    """The exact topic of a message kind: b"masks.demo", b"status"."""
    if kind not in TOPIC_KINDS:
        raise ValueError(f"unknown topic kind {kind!r}; one of {TOPIC_KINDS}")
    if kind == STATUS:
        return b"status"
    if not camera:
        raise ValueError(f"topic {kind!r} needs a camera id")
    return f"{kind}.{camera}".encode()


def packb(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def unpackb(data: bytes) -> Any:
    """Decode msgpack from an untrusted peer: str keys only, strict utf-8, no trailing bytes."""
    return msgpack.unpackb(data, raw=False, strict_map_key=True)


# --------------------------------------------------------------------------- COCO RLE masks
class RLEError(ValueError):
    """An RLE mask that is malformed or does not describe exactly size[0]*size[1] pixels."""


def encode_rle(mask: np.ndarray) -> dict[str, Any]:
    """HxW bool mask -> pycocotools-compatible compressed RLE `{"size": [h, w], "counts": str}`."""
    return encode_rles(np.asarray(mask)[None])[0]


def encode_rles(masks: np.ndarray) -> list[dict[str, Any]]:
    """(N, H, W) bool masks -> N compressed RLEs (one pycocotools call)."""
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"masks must be (N, H, W), got shape {masks.shape}")
    if masks.shape[0] == 0:
        return []
    fortran = np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8))
    return [{"size": [int(r["size"][0]), int(r["size"][1])], "counts": r["counts"].decode("ascii")}
            for r in coco_mask.encode(fortran)]


def _parse_compressed_counts(text: bytes) -> np.ndarray:
    """Parse COCO's compressed counts string (pycocotools rleFrString) without trusting it:
    pycocotools reads past the end of a truncated string and writes past the mask for counts
    that overrun it, so untrusted RLE is checked here and decoded with numpy."""
    c = np.frombuffer(text, np.uint8).astype(np.int64) - 48
    if c.size == 0:
        return np.zeros(0, np.int64)
    if c.min() < 0 or c.max() > 63:
        raise RLEError("counts string has characters outside '0'..'o' (not COCO compressed RLE)")
    more = (c & 0x20) != 0
    if more[-1]:
        raise RLEError("counts string is truncated (its last character continues a number)")
    ends = ~more
    starts = np.flatnonzero(np.concatenate(([True], ends[:-1])))
    lengths = np.diff(np.append(starts, c.size))
    if lengths.max() > 7:
        raise RLEError("counts string holds a number too large for a mask")
    position = np.arange(c.size) - np.repeat(starts, lengths)
    values = np.add.reduceat((c & 0x1F) << (5 * position), starts)
    negative = (c[ends] & 0x10) != 0
    values = np.where(negative, values - (np.int64(1) << (5 * lengths)), values)
    counts = values.copy()  # from the third run on, runs are stored as deltas to the run two back
    counts[1::2] = np.cumsum(values[1::2])
    counts[2::2] = np.cumsum(values[2::2])
    return counts


def rle_counts(rle: Any) -> tuple[tuple[int, int], np.ndarray]:
    """Check an RLE (compressed str/bytes counts or an uncompressed list of ints) and return
    ((h, w), run lengths). Raises RLEError naming what is wrong."""
    if not isinstance(rle, dict) or set(rle) != {"size", "counts"}:
        got = sorted(rle) if isinstance(rle, dict) else type(rle).__name__
        raise RLEError(f'mask must be COCO RLE {{"size": [h, w], "counts": ...}}, got {got}')
    size = rle["size"]
    if (not isinstance(size, list | tuple) or len(size) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and 0 < v <= 1 << 16 for v in size)):
        raise RLEError(f"mask size must be [height, width] with positive integers, got {size!r}")
    h, w = int(size[0]), int(size[1])
    raw = rle["counts"]
    if isinstance(raw, str):
        try:
            raw = raw.encode("ascii")
        except UnicodeEncodeError:
            raise RLEError("counts string must be ASCII (COCO compressed RLE)") from None
    if isinstance(raw, bytes):
        counts = _parse_compressed_counts(raw)
    elif isinstance(raw, list | tuple):
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in raw):
            raise RLEError("uncompressed counts must be a list of integers")
        if any(v < 0 or v > h * w for v in raw):
            raise RLEError(f"uncompressed counts must lie in [0, {h * w}]")
        counts = np.asarray(raw, dtype=np.int64).reshape(-1)
    else:
        raise RLEError(f"counts must be a COCO compressed string or a list of ints, got {type(raw).__name__}")
    if counts.size and (counts.min() < 0 or counts.max() > h * w):
        raise RLEError(f"counts has a run outside [0, {h * w}] (corrupt RLE)")
    if int(counts.sum()) != h * w:
        raise RLEError(f"counts cover {int(counts.sum())} pixels, but size {h}x{w} has {h * w}")
    return (h, w), counts


def decode_rle(rle: Any) -> np.ndarray:
    """COCO RLE -> HxW bool mask, after rle_counts checked it (safe on untrusted input)."""
    (h, w), counts = rle_counts(rle)
    values = np.zeros(counts.size, np.bool_)
    values[1::2] = True
    return np.repeat(values, counts).reshape(w, h).T.copy()


# --------------------------------------------------------------------------- field checks
def _field(body: dict, key: str, types: type | tuple[type, ...], *, optional: bool = False) -> Any:
    if key not in body:
        if optional:
            return None
        raise ProtocolError(f"field {key!r} is missing")
    value = body[key]
    if value is None and optional:
        return None
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise ProtocolError(f"field {key!r} must be {types}, got {value!r}")
    if not isinstance(value, types):
        raise ProtocolError(f"field {key!r} must be {types}, got {type(value).__name__} {value!r:.80}")
    return value


_NUMBER = (int, float)


# --------------------------------------------------------------------------- messages
@dataclass(frozen=True)
class ObjectResult:
    """One object in one frame. `box` is xyxy in source pixels (all zero for an empty mask),
    `score` the object-score logit (> 0: visible), `rle` the mask as COCO RLE, `state` the
    lifecycle state (OBJECT_STATES; None from a segmenter that does not send it)."""

    obj_id: int
    score: float
    box: tuple[float, float, float, float]
    area: int
    rle: dict[str, Any]
    state: str | None = None

    def mask(self) -> np.ndarray:
        return decode_rle(self.rle)


@dataclass(frozen=True)
class MasksMessage:
    """Topic masks.<camera>: the result of one processed frame. Times are ns: `*_ns` are
    time.monotonic_ns() on the segmenter's host, `capture_wall_ns` is time.time_ns()."""

    TYPE: ClassVar[str] = MASKS
    camera: str
    frame_index: int  # the capture index of the frame; prompts name frames by it
    width: int
    height: int
    capture_ns: int
    capture_wall_ns: int
    processed_ns: int
    objects: tuple[ObjectResult, ...] = ()
    latency_ms: dict[str, float] = field(default_factory=dict)  # stage name -> milliseconds
    skipped_total: int = 0  # frames the segmenter skipped on this camera since it started
    skipped_since_last: int = 0  # frames skipped between the previous masks message and this
    seq: int = 0  # set by the publisher: per-topic message counter
    published_ns: int = 0  # set by the publisher: monotonic time of serialization

    @classmethod
    def from_arrays(cls, camera: str, frame_index: int, *, obj_ids: Sequence[int], masks: np.ndarray,
                    scores: Sequence[float], boxes: np.ndarray, capture_ns: int, capture_wall_ns: int,
                    processed_ns: int, latency_ms: dict[str, float] | None = None,
                    skipped_total: int = 0, skipped_since_last: int = 0,
                    states: Sequence[str | None] | None = None) -> MasksMessage:
        """Build from an engine FrameResult's arrays: masks (N, H, W) bool, boxes (N, 4) xyxy;
        `states` one lifecycle state per object (None: not sent)."""
        masks = np.asarray(masks, dtype=bool)
        if masks.ndim != 3 or len(obj_ids) != masks.shape[0]:
            raise ValueError(f"need one (H, W) mask per object id: {len(obj_ids)} ids, masks {masks.shape}")
        rles = encode_rles(masks)
        areas = masks.sum(axis=(1, 2))
        states = [None] * len(obj_ids) if states is None else list(states)
        objects = tuple(
            ObjectResult(int(i), float(s), tuple(float(v) for v in b), int(a), r, st)  # type: ignore[arg-type]
            for i, s, b, a, r, st in zip(obj_ids, scores, np.asarray(boxes).reshape(-1, 4), areas, rles, states,
                                         strict=True)
        )
        return cls(camera, int(frame_index), int(masks.shape[2]), int(masks.shape[1]), int(capture_ns),
                   int(capture_wall_ns), int(processed_ns), objects,
                   {k: float(v) for k, v in (latency_ms or {}).items()}, int(skipped_total),
                   int(skipped_since_last))

    def _body(self) -> tuple[dict, list[bytes]]:
        objects = [{"id": o.obj_id, "score": o.score, "box": list(o.box), "area": o.area, "mask": o.rle,
                    **({} if o.state is None else {"state": o.state})} for o in self.objects]
        return {"frame_index": self.frame_index, "width": self.width, "height": self.height,
                "capture_ns": self.capture_ns, "capture_wall_ns": self.capture_wall_ns,
                "processed_ns": self.processed_ns, "latency_ms": self.latency_ms,
                "skipped_total": self.skipped_total, "skipped_since_last": self.skipped_since_last,
                "objects": objects}, []

    @classmethod
    def _from_body(cls, b: dict, raw: list[bytes]) -> MasksMessage:
        objects = []
        for o in _field(b, "objects", list):
            if not isinstance(o, dict):
                raise ProtocolError(f"each object must be a map, got {o!r:.80}")
            box = _field(o, "box", list)
            if len(box) != 4 or not all(isinstance(v, _NUMBER) for v in box):
                raise ProtocolError(f"object box must be [x0, y0, x1, y1], got {box!r}")
            objects.append(ObjectResult(_field(o, "id", int), float(_field(o, "score", _NUMBER)),
                                        tuple(float(v) for v in box), _field(o, "area", int),  # type: ignore[arg-type]
                                        _field(o, "mask", dict), _field(o, "state", str, optional=True)))
        return cls(b["camera"], _field(b, "frame_index", int), _field(b, "width", int), _field(b, "height", int),
                   _field(b, "capture_ns", int), _field(b, "capture_wall_ns", int), _field(b, "processed_ns", int),
                   tuple(objects), dict(_field(b, "latency_ms", dict)), _field(b, "skipped_total", int),
                   _field(b, "skipped_since_last", int))


@dataclass(frozen=True)
class FrameMessage:
    """Topic frame.<camera>: the frame as JPEG, for viewers on other hosts (raw third part)."""

    TYPE: ClassVar[str] = FRAME
    camera: str
    frame_index: int
    width: int
    height: int
    capture_ns: int
    capture_wall_ns: int
    jpeg: bytes = field(repr=False, default=b"")
    seq: int = 0
    published_ns: int = 0

    @classmethod
    def from_image(cls, camera: str, frame_index: int, rgb: np.ndarray, *, capture_ns: int,
                   capture_wall_ns: int, quality: int = 80) -> FrameMessage:
        import cv2

        ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
        if not ok:
            raise ValueError(f"JPEG encoding failed for a frame of shape {rgb.shape}")
        return cls(camera, int(frame_index), int(rgb.shape[1]), int(rgb.shape[0]), int(capture_ns),
                   int(capture_wall_ns), buf.tobytes())

    def image(self) -> np.ndarray:
        """The decoded frame, HxWx3 uint8 RGB."""
        import cv2

        bgr = cv2.imdecode(np.frombuffer(self.jpeg, np.uint8), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ProtocolError(f"frame {self.frame_index} of {self.camera!r}: JPEG part does not decode")
        return np.ascontiguousarray(bgr[..., ::-1])

    def _body(self) -> tuple[dict, list[bytes]]:
        return {"frame_index": self.frame_index, "width": self.width, "height": self.height,
                "capture_ns": self.capture_ns, "capture_wall_ns": self.capture_wall_ns,
                "encoding": "jpeg"}, [self.jpeg]

    @classmethod
    def _from_body(cls, b: dict, raw: list[bytes]) -> FrameMessage:
        if len(raw) != 1 or _field(b, "encoding", str) != "jpeg":
            raise ProtocolError(f"frame message needs one raw JPEG part, got {len(raw)} part(s)")
        return cls(b["camera"], _field(b, "frame_index", int), _field(b, "width", int), _field(b, "height", int),
                   _field(b, "capture_ns", int), _field(b, "capture_wall_ns", int), raw[0])


@dataclass(frozen=True)
class PromptEvent:
    """Topic prompt.<camera>: a control request the segmenter applied (for recorders and other
    viewers). `op` is the request type; `prompt` holds points/labels, box or mask (RLE);
    `frame_index` is the frame it was applied to, `obj_ids` the camera's objects afterwards."""

    TYPE: ClassVar[str] = PROMPT
    camera: str
    op: str
    obj_id: int | None
    frame_index: int | None
    requested_frame_index: int | None
    prompt: dict[str, Any]
    obj_ids: tuple[int, ...]
    t_wall_ns: int
    seq: int = 0
    published_ns: int = 0

    def _body(self) -> tuple[dict, list[bytes]]:
        return {"op": self.op, "obj_id": self.obj_id, "frame_index": self.frame_index,
                "requested_frame_index": self.requested_frame_index, "prompt": self.prompt,
                "obj_ids": list(self.obj_ids), "t_wall_ns": self.t_wall_ns}, []

    @classmethod
    def _from_body(cls, b: dict, raw: list[bytes]) -> PromptEvent:
        return cls(b["camera"], _field(b, "op", str), _field(b, "obj_id", int, optional=True),
                   _field(b, "frame_index", int, optional=True), _field(b, "requested_frame_index", int, optional=True),
                   dict(_field(b, "prompt", dict)), tuple(_field(b, "obj_ids", list)), _field(b, "t_wall_ns", int))


@dataclass(frozen=True)
class ObjectEvent:
    """Topic event.<camera>: one state change of one object (docs/PROTOCOL.md, "event").
    `event` is one of EVENT_KINDS, `state` the object's lifecycle state afterwards,
    `previous_state` before (None for appeared and zone events), `duration_s` how long the
    object was in `previous_state`, `zone` the zone of entered_zone / left_zone. `box` is the
    object's box, or its last visible box while it is hidden. Times are the frame's capture
    times (`capture_ns` monotonic, `capture_wall_ns` wall clock), so events line up with masks."""

    TYPE: ClassVar[str] = EVENT
    camera: str
    event: str
    obj_id: int
    frame_index: int
    capture_ns: int
    capture_wall_ns: int
    state: str
    box: tuple[float, float, float, float]
    score: float
    previous_state: str | None = None
    duration_s: float | None = None
    zone: str | None = None
    seq: int = 0
    published_ns: int = 0

    def _body(self) -> tuple[dict, list[bytes]]:
        return {"event": self.event, "obj_id": self.obj_id, "frame_index": self.frame_index,
                "capture_ns": self.capture_ns, "capture_wall_ns": self.capture_wall_ns, "state": self.state,
                "previous_state": self.previous_state, "duration_s": self.duration_s, "zone": self.zone,
                "box": list(self.box), "score": self.score}, []

    def to_json(self) -> dict[str, Any]:
        """The event as plain JSON values (the recorder and `rtseg export` write these)."""
        return {"camera": self.camera, **self._body()[0]}

    @classmethod
    def _from_body(cls, b: dict, raw: list[bytes]) -> ObjectEvent:
        box = _field(b, "box", list)
        if len(box) != 4 or not all(isinstance(v, _NUMBER) for v in box):
            raise ProtocolError(f"event box must be [x0, y0, x1, y1], got {box!r}")
        duration = _field(b, "duration_s", _NUMBER, optional=True)
        return cls(b["camera"], _field(b, "event", str), _field(b, "obj_id", int), _field(b, "frame_index", int),
                   _field(b, "capture_ns", int), _field(b, "capture_wall_ns", int), _field(b, "state", str),
                   tuple(float(v) for v in box), float(_field(b, "score", _NUMBER)),  # type: ignore[arg-type]
                   _field(b, "previous_state", str, optional=True), None if duration is None else float(duration),
                   _field(b, "zone", str, optional=True))


@dataclass(frozen=True)
class CameraStatus:
    fps: float = 0.0  # processed frames per second over the last status interval
    latency_p50_ms: float | None = None  # capture -> published, over the last interval
    latency_p99_ms: float | None = None
    frames_processed: int = 0
    frames_skipped: int = 0
    frame_index: int | None = None  # latest processed frame
    obj_ids: tuple[int, ...] = ()
    source_state: str = "unknown"  # the ring's capture status: connected, lost, reconnecting, ended ...


@dataclass(frozen=True)
class StatusMessage:
    """Topic status: once per status interval, the whole pipeline (header camera is None)."""

    TYPE: ClassVar[str] = STATUS
    cameras: dict[str, CameraStatus] = field(default_factory=dict)
    gpu_memory: dict[str, int] | None = None  # byte counters: allocated_bytes, reserved_bytes, peak_bytes; None on CPU
    publisher: dict[str, int] = field(default_factory=dict)  # Publisher.stats()
    device: str = ""
    uptime_s: float = 0.0
    seq: int = 0
    published_ns: int = 0
    camera: None = None

    def _body(self) -> tuple[dict, list[bytes]]:
        cams = {cid: {**dataclasses.asdict(c), "obj_ids": list(c.obj_ids)} for cid, c in self.cameras.items()}
        return {"cameras": cams, "gpu_memory": self.gpu_memory, "publisher": self.publisher,
                "device": self.device, "uptime_s": self.uptime_s}, []

    @classmethod
    def _from_body(cls, b: dict, raw: list[bytes]) -> StatusMessage:
        names = {f.name for f in dataclasses.fields(CameraStatus)}
        cams = {}
        for cid, c in _field(b, "cameras", dict).items():
            if not isinstance(c, dict):
                raise ProtocolError(f"status of camera {cid!r} must be a map, got {c!r:.80}")
            known = {k: v for k, v in c.items() if k in names}  # newer fields are ignored
            known["obj_ids"] = tuple(known.get("obj_ids", ()))
            cams[cid] = CameraStatus(**known)
        return cls(cams, _field(b, "gpu_memory", dict, optional=True), dict(_field(b, "publisher", dict)),
                   _field(b, "device", str), float(_field(b, "uptime_s", _NUMBER)))


Message = MasksMessage | FrameMessage | PromptEvent | StatusMessage | ObjectEvent
_BY_TYPE: dict[str, Any] = {c.TYPE: c for c in (MasksMessage, FrameMessage, PromptEvent, StatusMessage, ObjectEvent)}


def pack(msg: Message) -> list[bytes]:
    """Serialize every part of `msg`: [topic, body, *raw]. Raises before anything is sent."""
    body, raw = msg._body()
    header = {"v": PROTOCOL_VERSION, "type": msg.TYPE, "camera": msg.camera, "seq": msg.seq,
              "published_ns": msg.published_ns}
    return [topic_for(msg.TYPE, msg.camera), packb({**header, **body}), *raw]


def unpack(parts: Sequence[bytes]) -> Message:
    """Decode a received multipart message; raises ProtocolError naming what is wrong."""
    if len(parts) < 2:
        raise ProtocolError(f"a message has at least [topic, body]; got {len(parts)} part(s)")
    try:
        body = unpackb(bytes(parts[1]))
    except Exception as e:
        raise ProtocolError(f"message body is not msgpack: {e}") from None
    if not isinstance(body, dict):
        raise ProtocolError(f"message body must be a map, got {type(body).__name__}")
    if body.get("v") != PROTOCOL_VERSION:
        raise ProtocolError(f"message has protocol version {body.get('v')!r}; this rtseg speaks "
                            f"{PROTOCOL_VERSION} (upgrade the older side)")
    kind = body.get("type")
    cls = _BY_TYPE.get(kind)  # type: ignore[arg-type]
    if cls is None:
        raise ProtocolError(f"unknown message type {kind!r}; known: {sorted(_BY_TYPE)}")
    try:
        camera = _field(body, "camera", str, optional=True)
        if topic_for(kind, camera) != bytes(parts[0]):
            raise ProtocolError(f"topic {bytes(parts[0])!r} does not match a {kind} message of camera {camera!r}")
        msg = cls._from_body(body, [bytes(p) for p in parts[2:]])
    except ProtocolError:
        raise
    except (KeyError, TypeError, ValueError) as e:
        raise ProtocolError(f"malformed {kind} message: {e!r}") from None
    return dataclasses.replace(msg, seq=_field(body, "seq", int), published_ns=_field(body, "published_ns", int))

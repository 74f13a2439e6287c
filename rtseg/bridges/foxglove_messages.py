"""rtseg protocol messages as Foxglove messages, for the live bridge and for recordings.

One function, `to_foxglove(msg)`, so what a Foxglove user sees live and in a recording is the
same. Topics (per camera; the frame and its masks carry the same timestamp, the frame's
capture wall clock, so the Image panel puts the masks on the frame they were computed from):

  /<camera>/image    foxglove.CompressedImage   the frame as JPEG (frame_id = camera)
  /<camera>/masks    foxglove.ImageAnnotations  per object: its outline as polygon(s) in the
                                                object's colour (filled, translucent) and a
                                                label "id score state"; metadata camera and
                                                frame_index
  /<camera>/events   JSON rtseg.PromptEvent     prompts, removes, resets the segmenter applied
  /<camera>/object_events  JSON rtseg.ObjectEvent  lifecycle and zone events (appeared, occluded,
                                                reappeared, lost, removed, entered_zone, left_zone)
  /rtseg/status      JSON rtseg.Status          the pipeline's status message

Messages are encoded by the official `foxglove-sdk` (protobuf, schema = its FileDescriptorSet),
so any Foxglove tool decodes them with the well-known schemas.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import cv2
import numpy as np

from rtseg.protocol import FrameMessage, MasksMessage, Message, ObjectEvent, PromptEvent, StatusMessage
from rtseg.view.overlay import DecodedObject, decode_objects, object_color

STATUS_TOPIC = "/rtseg/status"
FILL_ALPHA = 0.35  # polygon fill opacity in Foxglove's Image panel
OUTLINE_PX = 2.0
FONT_PX = 14.0
MAX_POLYGONS = 32  # per object
MAX_POINTS = 1000  # per polygon: a ragged outline is simplified further
SIMPLIFY_PX = 0.75  # polygon simplification (Douglas-Peucker); vertices stay on mask pixels


def image_topic(camera: str) -> str:
    return f"/{camera}/image"


def masks_topic(camera: str) -> str:
    return f"/{camera}/masks"


def events_topic(camera: str) -> str:
    return f"/{camera}/events"


def object_events_topic(camera: str) -> str:
    return f"/{camera}/object_events"


@dataclass(frozen=True)
class Schema:
    name: str
    encoding: str  # "protobuf" (data: a FileDescriptorSet) or "jsonschema" (data: JSON Schema)
    data: bytes


@dataclass(frozen=True)
class FoxgloveMessage:
    """One message for a Foxglove channel: where it goes, how it is encoded, its bytes."""

    topic: str
    schema: Schema
    message_encoding: str  # "protobuf" or "json"
    data: bytes
    log_time_ns: int  # wall clock: the frame's capture time (masks, images) or the event's


@lru_cache(maxsize=None)
def _protobuf_schema(kind: str) -> Schema:
    import foxglove.messages as fm

    s = getattr(fm, kind).get_schema()
    return Schema(s.name, s.encoding, bytes(s.data))


def _json_schema(name: str, properties: dict[str, Any]) -> Schema:
    return Schema(name, "jsonschema", json.dumps({"title": name, "type": "object",
                                                  "properties": properties}).encode())


EVENT_SCHEMA = _json_schema("rtseg.PromptEvent", {
    "camera": {"type": "string"}, "op": {"type": "string"}, "obj_id": {"type": ["integer", "null"]},
    "frame_index": {"type": ["integer", "null"]}, "requested_frame_index": {"type": ["integer", "null"]},
    "prompt": {"type": "object"}, "obj_ids": {"type": "array", "items": {"type": "integer"}},
    "t_wall_ns": {"type": "integer"}, "seq": {"type": "integer"}})
OBJECT_EVENT_SCHEMA = _json_schema("rtseg.ObjectEvent", {
    "camera": {"type": "string"}, "event": {"type": "string"}, "obj_id": {"type": "integer"},
    "frame_index": {"type": "integer"}, "capture_ns": {"type": "integer"}, "capture_wall_ns": {"type": "integer"},
    "state": {"type": "string"}, "previous_state": {"type": ["string", "null"]},
    "duration_s": {"type": ["number", "null"]}, "zone": {"type": ["string", "null"]},
    "box": {"type": "array", "items": {"type": "number"}}, "score": {"type": "number"}, "seq": {"type": "integer"}})
STATUS_SCHEMA = _json_schema("rtseg.Status", {
    "cameras": {"type": "object"}, "gpu_memory": {"type": ["object", "null"]}, "publisher": {"type": "object"},
    "device": {"type": "string"}, "uptime_s": {"type": "number"}, "seq": {"type": "integer"}})


def _timestamp(wall_ns: int) -> Any:
    from foxglove.messages import Timestamp

    return Timestamp(int(wall_ns) // 1_000_000_000, int(wall_ns) % 1_000_000_000)


def _color(rgb: tuple[int, int, int], alpha: float) -> Any:
    from foxglove.messages import Color

    return Color(r=rgb[0] / 255.0, g=rgb[1] / 255.0, b=rgb[2] / 255.0, a=alpha)


def outline_polygons(obj: DecodedObject, simplify_px: float = SIMPLIFY_PX) -> list[np.ndarray]:
    """The outer outline of each connected part (the MAX_POLYGONS largest) of the object's mask, as (K, 2) float arrays
    of source-pixel coordinates (x, y) in Foxglove's convention (0, 0 is the top-left corner
    of the top-left pixel): every vertex is the centre of a mask pixel on the border."""
    if obj.crop.size == 0:
        return []
    contours, _ = cv2.findContours(obj.crop.view(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if len(contours) > MAX_POLYGONS:  # a speckled mask: its largest parts only, so messages stay small
        contours = sorted(contours, key=cv2.contourArea, reverse=True)[:MAX_POLYGONS]
    polygons = []
    for c in contours:
        epsilon, simplified = simplify_px, c
        while epsilon > 0 and len(c) > 4 and (epsilon == simplify_px or len(simplified) > MAX_POINTS):
            simplified = cv2.approxPolyDP(c, epsilon, True)  # its vertices are points of the contour
            epsilon *= 2
        c = simplified
        points = c.reshape(-1, 2).astype(np.float64) + (obj.x0 + 0.5, obj.y0 + 0.5)
        polygons.append(points)
    return polygons


def object_state(obj: DecodedObject) -> str:
    """The segmenter's lifecycle state (tracking, occluded, lost, reacquired) when the masks
    message carries one, else "visible" (object score > 0 and pixels in the mask) or "hidden"."""
    if obj.state:
        return obj.state
    return "visible" if obj.score > 0 and obj.crop.size else "hidden"


def label(obj: DecodedObject) -> str:
    return f"{obj.obj_id} {obj.score:+.2f} {object_state(obj)}"


def image_annotations(msg: MasksMessage) -> tuple[bytes, list[str]]:
    """The masks of one frame as an encoded foxglove.ImageAnnotations, and the errors of
    objects whose mask could not be decoded (they are left out)."""
    from foxglove.messages import (ImageAnnotations, KeyValuePair, Point2, PointsAnnotation, PointsAnnotationType,
                                   TextAnnotation)

    objects, errors = decode_objects(msg.objects, msg.width, msg.height)
    stamp = _timestamp(msg.capture_wall_ns)
    points, texts = [], []
    hidden = 0
    for obj in objects:
        rgb = object_color(obj.obj_id)
        for polygon in outline_polygons(obj):
            kind = PointsAnnotationType.LineLoop if len(polygon) >= 3 else PointsAnnotationType.Points
            points.append(PointsAnnotation(timestamp=stamp, type=kind,
                                           points=[Point2(x=float(x), y=float(y)) for x, y in polygon],
                                           outline_color=_color(rgb, 1.0), fill_color=_color(rgb, FILL_ALPHA),
                                           thickness=OUTLINE_PX))
        if obj.crop.size:
            x, y = float(obj.x0), max(0.0, float(obj.y0) - FONT_PX - 4)
        else:  # no pixels to put the label on: stack hidden objects' labels in the top-left corner
            x, y = 4.0, 4.0 + hidden * (FONT_PX + 6)
            hidden += 1
        luminance = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
        ink = (0, 0, 0) if luminance > 140 else (255, 255, 255)
        texts.append(TextAnnotation(timestamp=stamp, position=Point2(x=x, y=y), text=label(obj), font_size=FONT_PX,
                                    text_color=_color(ink, 1.0), background_color=_color(rgb, 0.85)))
    metadata = [KeyValuePair(key="camera", value=msg.camera), KeyValuePair(key="frame_index", value=str(msg.frame_index))]
    return ImageAnnotations(timestamp=stamp, points=points, texts=texts, metadata=metadata).encode(), errors


def compressed_image(camera: str, jpeg: bytes, capture_wall_ns: int) -> bytes:
    from foxglove.messages import CompressedImage

    return CompressedImage(timestamp=_timestamp(capture_wall_ns), frame_id=camera, data=bytes(jpeg),
                           format="jpeg").encode()


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("ascii", "replace")
    return value


def to_foxglove(msg: Message) -> tuple[list[FoxgloveMessage], list[str]]:
    """The Foxglove messages for one rtseg message (none for an unknown kind), and the
    errors met on the way (an undecodable mask is left out and named)."""
    if isinstance(msg, MasksMessage):
        data, errors = image_annotations(msg)
        return [FoxgloveMessage(masks_topic(msg.camera), _protobuf_schema("ImageAnnotations"), "protobuf", data,
                                msg.capture_wall_ns)], errors
    if isinstance(msg, FrameMessage):
        return [FoxgloveMessage(image_topic(msg.camera), _protobuf_schema("CompressedImage"), "protobuf",
                                compressed_image(msg.camera, msg.jpeg, msg.capture_wall_ns), msg.capture_wall_ns)], []
    if isinstance(msg, PromptEvent):
        body = json.dumps(_plain(dataclasses.asdict(msg))).encode()
        return [FoxgloveMessage(events_topic(msg.camera), EVENT_SCHEMA, "json", body, msg.t_wall_ns)], []
    if isinstance(msg, ObjectEvent):
        body = json.dumps(_plain({"camera": msg.camera, **msg._body()[0], "seq": msg.seq})).encode()
        return [FoxgloveMessage(object_events_topic(msg.camera), OBJECT_EVENT_SCHEMA, "json", body,
                                msg.capture_wall_ns)], []
    if isinstance(msg, StatusMessage):
        body = json.dumps(_plain(dataclasses.asdict(msg))).encode()
        import time

        return [FoxgloveMessage(STATUS_TOPIC, STATUS_SCHEMA, "json", body, time.time_ns())], []
    return [], []


def image_schema() -> Schema:
    return _protobuf_schema("CompressedImage")

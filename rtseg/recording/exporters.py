"""Recording -> COCO JSON (RLE masks) + events JSON, DAVIS palette PNGs, MP4 with masks drawn, Foxglove MCAP.

Each exporter reads the recording twice: a quick survey (cameras, frame counts, object ids,
frame rate) and the export itself, which drives the progress bar. Closed segments and the
complete records of a `.part` are read alike.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from rtseg.protocol import EVENT, FRAME, MASKS, PROMPT, STATUS, FrameMessage, MasksMessage, ObjectEvent, ProtocolError
from rtseg.recording.segment import RecordingError
from rtseg.recording.store import RecordingReader

log = logging.getLogger(__name__)

Progress = Callable[[int], None]


@dataclass
class CameraSurvey:
    masks: int = 0
    frames: int = 0
    size: tuple[int, int] | None = None  # (width, height) of the first masks message
    obj_ids: set[int] = field(default_factory=set)
    mask_times: list[int] = field(default_factory=list)  # capture_ns
    frame_times: list[int] = field(default_factory=list)

    def fps(self, times: list[int], default: float = 5.0) -> float:
        if len(times) < 2:
            return default
        steps = np.diff(np.asarray(times, np.int64))
        steps = steps[steps > 0]
        return float(np.clip(1e9 / np.median(steps), 0.5, 240.0)) if steps.size else default


def _messages(reader: RecordingReader, kinds: Iterable[str], cameras: Iterable[str] | None,
              on_bytes: Progress | None = None) -> Iterator[MasksMessage | FrameMessage]:
    for rec in reader.records(kinds=kinds, cameras=cameras, on_bytes=on_bytes):
        try:
            yield rec.message()  # type: ignore[misc]
        except ProtocolError as e:
            log.warning("skipping a recorded %s message that does not decode: %s", rec.topic, e)


def survey(reader: RecordingReader, cameras: Iterable[str] | None = None) -> dict[str, CameraSurvey]:
    out: dict[str, CameraSurvey] = {}
    for msg in _messages(reader, (MASKS, FRAME), cameras):
        cam = out.setdefault(msg.camera, CameraSurvey())
        if isinstance(msg, MasksMessage):
            cam.masks += 1
            cam.size = cam.size or (msg.width, msg.height)
            cam.obj_ids.update(o.obj_id for o in msg.objects)
            cam.mask_times.append(msg.capture_ns)
        else:
            cam.frames += 1
            cam.frame_times.append(msg.capture_ns)
    if not any(c.masks for c in out.values()):
        which = f" of camera(s) {sorted(cameras)}" if cameras else ""
        raise RecordingError(f"recording {reader.recording} holds no masks{which} "
                             f"({len(reader.segments)} segment(s)); nothing to export")
    return out


def _write_jpeg(folder: Path, msg: FrameMessage) -> str:
    rel = f"{msg.camera}/{msg.frame_index:08d}.jpg"
    path = folder / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(msg.jpeg)
    return rel


# --------------------------------------------------------------------------- COCO
def export_coco(recording: Path, out: Path, *, cameras: Iterable[str] | None = None,
                progress: Progress | None = None, on_total: Callable[[int], None] | None = None) -> dict:
    """COCO JSON at `out`: one image per processed frame (id, width, height, camera, frame_index,
    capture_wall_ns, and file_name camera/frame.jpg when that frame was recorded); one annotation
    per non-empty object mask (segmentation = compressed RLE, bbox xywh, area, track_id = object
    id, score; category 1 "object"). Recorded frames are written as JPEG under `<out stem>_images/`;
    an image whose frame was not recorded has no file_name, and info.images_without_frame counts them."""
    reader = RecordingReader(recording)
    cams = survey(reader, cameras)
    if on_total:
        on_total(sum(c.masks + c.frames for c in cams.values()))
    image_dir = out.with_name(out.stem + "_images")
    images: dict[tuple[str, int], dict] = {}
    annotations: list[dict] = []
    jpegs: set[tuple[str, int]] = set()
    for msg in _messages(reader, (MASKS, FRAME), cameras):
        if progress:
            progress(1)
        if isinstance(msg, FrameMessage):
            _write_jpeg(image_dir, msg)
            jpegs.add((msg.camera, msg.frame_index))
            continue
        key = (msg.camera, msg.frame_index)
        if key in images:
            continue  # the same frame recorded twice (a replay recorded again): keep the first
        image_id = len(images) + 1
        images[key] = {"id": image_id, "file_name": f"{msg.camera}/{msg.frame_index:08d}.jpg",
                       "width": msg.width, "height": msg.height, "camera": msg.camera,
                       "frame_index": msg.frame_index, "capture_wall_ns": msg.capture_wall_ns}
        for obj in msg.objects:
            if obj.area == 0:
                continue
            x0, y0, x1, y1 = obj.box
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": 1,
                                "segmentation": {"size": list(obj.rle["size"]), "counts": obj.rle["counts"]},
                                "area": obj.area, "bbox": [x0, y0, x1 - x0, y1 - y0], "iscrowd": 0,
                                "track_id": obj.obj_id, "score": obj.score,
                                **({} if obj.state is None else {"state": obj.state})})
    without_frame = [key for key in images if key not in jpegs]
    for key in without_frame:
        del images[key]["file_name"]  # name only files that exist
    doc = {"info": {"description": f"rtseg recording {Path(recording).name}",
                    "image_root": image_dir.name if jpegs else None, "frames_with_jpeg": len(jpegs),
                    "images_without_frame": len(without_frame)},
           "images": list(images.values()), "annotations": annotations,
           "categories": [{"id": 1, "name": "object", "supercategory": "object"}]}
    _write_json(out, doc)
    events_out = events_path(out)
    n_events = export_events(reader, events_out, cameras, {k: v["id"] for k, v in images.items()})
    return {"images": len(images), "annotations": len(annotations), "jpegs": len(jpegs),
            "without_frame": len(without_frame), "out": str(out), "events": n_events, "events_out": str(events_out)}


def _write_json(out: Path, doc: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, out)


def events_path(coco_out: Path) -> Path:
    """Where the events go beside a COCO file: x.coco.json -> x.events.json, x.json -> x.events.json."""
    return coco_out.with_name(coco_out.name.removesuffix(".json").removesuffix(".coco") + ".events.json")


def export_events(reader: RecordingReader, out: Path, cameras: Iterable[str] | None,
                  image_ids: dict[tuple[str, int], int]) -> int:
    """The recorded object events (appeared, occluded, reappeared, lost, removed, entered_zone,
    left_zone) in order, as `{"events": [...]}` with the event topic's fields plus `camera` and
    `image_id` (the COCO image of the same frame, null when that frame has no masks record)."""
    events = []
    for rec in reader.records(kinds=(EVENT,), cameras=cameras):
        try:
            ev = rec.message()
        except ProtocolError as e:
            log.warning("skipping a recorded event that does not decode: %s", e)
            continue
        if isinstance(ev, ObjectEvent):
            events.append({**ev.to_json(), "image_id": image_ids.get((ev.camera, ev.frame_index))})
    _write_json(out, {"events": events})
    return len(events)


# --------------------------------------------------------------------------- DAVIS
def palette_indices(obj_ids: Iterable[int]) -> dict[int, int]:
    """Object id -> palette index: the id itself when every id is in 1..255, otherwise
    1, 2, 3... in id order. More than 255 objects do not fit a palette PNG."""
    ids = sorted(set(obj_ids))
    if len(ids) > 255:
        raise RecordingError(f"{len(ids)} objects do not fit DAVIS palette PNGs (at most 255); export "
                             f"fewer cameras/objects or use --to coco")
    if all(1 <= i <= 255 for i in ids):
        return {i: i for i in ids}
    return {obj_id: n for n, obj_id in enumerate(ids, start=1)}


def export_davis(recording: Path, out: Path, *, cameras: Iterable[str] | None = None,
                 progress: Progress | None = None, on_total: Callable[[int], None] | None = None) -> dict:
    """DAVIS layout under `out`: Annotations/<camera>/<frame_index:08d>.png (PIL 'P' mode,
    pixel = palette index of the object, 0 background; where masks overlap the higher object id
    wins), JPEGImages/<camera>/<frame_index:08d>.jpg for recorded frames, objects.json
    (palette index -> object id)."""
    from PIL import Image

    from rtseg.recording.draw import davis_palette

    reader = RecordingReader(recording)
    cams = survey(reader, cameras)
    if on_total:
        on_total(sum(c.masks + c.frames for c in cams.values()))
    index = palette_indices(set().union(*(c.obj_ids for c in cams.values())))
    palette = davis_palette().reshape(-1).tolist()
    pngs = jpegs = 0
    for msg in _messages(reader, (MASKS, FRAME), cameras):
        if progress:
            progress(1)
        if isinstance(msg, FrameMessage):
            _write_jpeg(out / "JPEGImages", msg)
            jpegs += 1
            continue
        label = np.zeros((msg.height, msg.width), np.uint8)
        for obj in sorted(msg.objects, key=lambda o: o.obj_id):
            label[obj.mask()] = index[obj.obj_id]
        image = Image.fromarray(label)
        image.putpalette(palette)  # 'L' -> 'P': the pixel values are the palette indices
        path = out / "Annotations" / msg.camera / f"{msg.frame_index:08d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path)
        pngs += 1
    (out / "objects.json").write_text(json.dumps({str(v): k for k, v in sorted(index.items())}, indent=1))
    return {"pngs": pngs, "jpegs": jpegs, "objects": len(index), "out": str(out)}


# --------------------------------------------------------------------------- MP4
def mp4_paths(out: Path, cameras: list[str]) -> dict[str, Path]:
    if len(cameras) == 1:
        return {cameras[0]: out}
    return {cam: out.with_name(f"{out.stem}.{cam}{out.suffix or '.mp4'}") for cam in cameras}


def export_mp4(recording: Path, out: Path, *, cameras: Iterable[str] | None = None,
               progress: Progress | None = None, on_total: Callable[[int], None] | None = None,
               notice: Callable[[str], None] = log.warning) -> dict:
    """One MP4 per camera (`out`, or `<out stem>.<camera>.mp4` for several) with the masks drawn.
    With recorded frames (recorder.video raw/overlay): one video frame per recorded frame, drawn
    with the masks of the same frame index (or the newest earlier ones). Without: the masks
    drawn on black, one video frame per masks message. The frame rate is the recorded one."""
    from rtseg.recording.draw import RecentMasks, draw_masks
    from rtseg.recording.video import Mp4Writer

    reader = RecordingReader(recording)
    cams = {k: v for k, v in survey(reader, cameras).items() if v.masks}
    if on_total:
        on_total(sum(c.frames if c.frames else c.masks for c in cams.values()))
    paths = mp4_paths(out, sorted(cams))
    writers = {}
    for cam, info in cams.items():
        if not info.frames:
            notice(f"camera {cam}: no frames were recorded (record with recorder.video raw or overlay and "
                   f"network.frame_topic.enabled), so its masks are drawn on black")
        fps = info.fps(info.frame_times if info.frames else info.mask_times)
        writers[cam] = Mp4Writer(paths[cam], fps, part_path=paths[cam].with_name(paths[cam].stem + ".part.mp4"))
    recent = RecentMasks()
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        for msg in _messages(reader, (MASKS, FRAME), list(cams)):
            info = cams[msg.camera]
            if isinstance(msg, MasksMessage):
                if info.frames:
                    recent.add(msg)
                    continue
                writers[msg.camera].write(draw_masks(np.zeros((msg.height, msg.width, 3), np.uint8), msg))
            else:
                writers[msg.camera].write(draw_masks(msg.image(), recent.for_frame(msg.camera, msg.frame_index)))
            if progress:
                progress(1)
    except BaseException:
        for w in writers.values():
            w.abandon()
            w.part_path.unlink(missing_ok=True)
        raise
    written = {cam: str(w.close()) for cam, w in writers.items()}
    return {"videos": written, "frames": {cam: w.frames for cam, w in writers.items()},
            "on_black": sorted(cam for cam, c in cams.items() if not c.frames)}


# --------------------------------------------------------------------------- Foxglove
def export_foxglove(recording: Path, out: Path, *, cameras: Iterable[str] | None = None,
                    progress: Progress | None = None, on_total: Callable[[int], None] | None = None) -> dict:
    """One indexed MCAP file at `out` with the recording on Foxglove channels only
    (rtseg.bridges.foxglove_messages: /<camera>/image, /<camera>/masks, /<camera>/events,
    /rtseg/status), in recorded order: for recordings made with `recorder.foxglove: false` or by
    an older rtseg, or to hand one file to someone with Foxglove."""
    from mcap.writer import CompressionType, Writer

    from rtseg import __version__
    from rtseg.bridges.foxglove_messages import to_foxglove

    reader = RecordingReader(recording)
    cams = survey(reader, cameras)
    if on_total:
        on_total(sum(c.masks + c.frames for c in cams.values()))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    counts: dict[str, int] = {}
    with open(tmp, "wb") as f:
        writer = Writer(f, compression=CompressionType.NONE)
        writer.start(profile="", library=f"rtseg {__version__}")
        schemas: dict[str, int] = {}
        channels: dict[str, int] = {}
        for rec in reader.records(kinds=(MASKS, FRAME, PROMPT, STATUS), cameras=cameras):
            if progress and rec.kind in (MASKS, FRAME):
                progress(1)
            try:
                msg = rec.message()
            except ProtocolError as e:
                log.warning("skipping a recorded %s message that does not decode: %s", rec.topic, e)
                continue
            messages, errors = to_foxglove(msg)
            for text in errors:
                log.warning("%s: %s", rec.topic, text)
            for m in messages:
                if m.topic not in channels:
                    if m.schema.name not in schemas:
                        schemas[m.schema.name] = writer.register_schema(m.schema.name, m.schema.encoding, m.schema.data)
                    channels[m.topic] = writer.register_channel(m.topic, m.message_encoding, schemas[m.schema.name])
                writer.add_message(channels[m.topic], rec.log_time_ns, m.data, m.log_time_ns, rec.sequence & 0xFFFFFFFF)
                counts[m.topic] = counts.get(m.topic, 0) + 1
        writer.finish()
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, out)
    return {"out": str(out), "messages": counts}

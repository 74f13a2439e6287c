"""A recording folder: segment names, listing, reading in order, crash recovery, retention.

Files (see docs/RECORDING.md):
  rtseg-<UTC start, YYYYmmddTHHMMSS_ffffff>Z.mcap         closed segment
  rtseg-<...>Z.mcap.part                                   the open segment (or one left by a crash)
  rtseg-<...>Z.<camera>.mp4 / .<camera>.part.mp4           optional video of that segment
Names sort in time order. Only files with these names are ever read, renamed or deleted.
"""
from __future__ import annotations

import datetime as dt
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

from rtseg.recording.segment import (
    PART_SUFFIX,
    SEGMENT_SUFFIX,
    Record,
    RecordingError,
    SegmentScan,
    SegmentWriter,
    fsync_dir,
    iter_raw,
    iter_segment,
)

log = logging.getLogger(__name__)

PREFIX = "rtseg-"
RECOVERING_SUFFIX = ".recovering"
_STEM = r"rtseg-\d{8}T\d{6}_\d{6}Z"
_SEGMENT_RE = re.compile(rf"^({_STEM})\.mcap(\.part|\.recovering)?$")
_VIDEO_RE = re.compile(rf"^({_STEM})\.([A-Za-z0-9_-]{{1,64}})(\.part)?\.mp4$")


def segment_stem(wall_ns: int) -> str:
    t = dt.datetime.fromtimestamp(wall_ns / 1e9, tz=dt.timezone.utc)
    return PREFIX + t.strftime("%Y%m%dT%H%M%S_%fZ")


def new_segment_path(directory: Path, wall_ns: int | None = None) -> Path:
    """A fresh segment name in `directory` (later than any name there when the clock is sane)."""
    wall_ns = time.time_ns() if wall_ns is None else wall_ns
    while True:
        path = directory / (segment_stem(wall_ns) + SEGMENT_SUFFIX)
        if not any(p.exists() for p in (path, path.with_name(path.name + PART_SUFFIX))):
            return path
        wall_ns += 1000  # the same microsecond: the next one keeps names in order


def video_path(segment: Path, camera: str, *, part: bool) -> Path:
    stem = segment.name.removesuffix(PART_SUFFIX).removesuffix(SEGMENT_SUFFIX)
    return segment.with_name(f"{stem}.{camera}{'.part' if part else ''}.mp4")


def list_segments(recording: str | Path) -> list[Path]:
    """The segments of a recording folder in time order: closed ones and `.part` files (a
    `.part` whose closed twin exists is a leftover of recovery and is ignored). A single
    segment file is a recording of one segment."""
    recording = Path(recording)
    if recording.is_file():
        return [recording]
    if not recording.is_dir():
        raise RecordingError(f"recording {recording} does not exist: give a recording folder "
                             f"(recorder.directory) or one of its .mcap segment files")
    closed, parts = set(), []
    for p in recording.iterdir():
        m = _SEGMENT_RE.match(p.name)
        if m and m.group(2) is None:
            closed.add(m.group(1))
    for p in recording.iterdir():
        m = _SEGMENT_RE.match(p.name)
        if m and m.group(2) == PART_SUFFIX and m.group(1) not in closed:
            parts.append(p)
    return sorted([recording / (s + SEGMENT_SUFFIX) for s in closed] + parts, key=lambda p: p.name)


def list_videos(recording: str | Path) -> list[Path]:
    recording = Path(recording)
    folder = recording if recording.is_dir() else recording.parent
    return sorted(p for p in folder.iterdir() if (m := _VIDEO_RE.match(p.name)) and not m.group(3))


@dataclass
class RecordingReader:
    """Reads every record of a recording in order, across its segments. `scans` tells, per
    segment, how many records were read and what was skipped."""

    recording: Path
    segments: list[Path] = field(default_factory=list)
    scans: list[SegmentScan] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.recording = Path(self.recording)
        self.segments = list_segments(self.recording)

    def total_bytes(self) -> int:
        return _bytes_on_disk(self.segments)

    def records(self, kinds: Iterable[str] | None = None, cameras: Iterable[str] | None = None,
                on_bytes: Callable[[int], None] | None = None) -> Iterator[Record]:
        """Records of the wanted kinds ("masks", "frame", "prompt", "status") and cameras
        (status has no camera and passes any camera filter). `on_bytes(n)` reports progress."""
        kinds = set(kinds) if kinds is not None else None
        cameras = set(cameras) if cameras is not None else None
        self.scans = []
        for path in self.segments:
            scan = SegmentScan(path)
            self.scans.append(scan)
            done = 0
            for rec in iter_segment(path, scan):
                if on_bytes is not None and scan.bytes_read > done:
                    on_bytes(scan.bytes_read - done)
                    done = scan.bytes_read
                if kinds is not None and rec.kind not in kinds:
                    continue
                if cameras is not None and rec.camera is not None and rec.camera not in cameras:
                    continue
                yield rec
            if on_bytes is not None and scan.bytes_read > done:
                on_bytes(scan.bytes_read - done)
            if scan.tail_bytes:
                level = logging.INFO if scan.path.name.endswith(PART_SUFFIX) else logging.WARNING
                log.log(level, "%s: %d complete record(s); the last %d byte(s) are an incomplete record "
                        "(the recorder was stopped mid-write) and were ignored", scan.path, scan.records, scan.tail_bytes)


def read_records(recording: str | Path, **kwargs) -> list[Record]:
    return list(RecordingReader(Path(recording)).records(**kwargs))


# --------------------------------------------------------------------------- recovery
def recover_parts(directory: Path, *, keep: Iterable[Path] = (), beat: Callable[[], None] = lambda: None) -> list[Path]:
    """Turn `.part` segments left by a crash into closed segments holding their complete
    records; remove leftovers of an interrupted recovery and unplayable `.part.mp4` videos.
    Call only while holding the recorder lock of `directory`. Returns the closed segments."""
    keep = {Path(p) for p in keep}
    recovered = []
    for p in sorted(directory.iterdir()):
        if p.name.endswith(SEGMENT_SUFFIX + RECOVERING_SUFFIX) and _SEGMENT_RE.match(p.name):
            p.unlink()
        elif (m := _VIDEO_RE.match(p.name)) and m.group(3) and p not in keep:
            log.warning("removing %s: an MP4 is unplayable until it is closed; `rtseg export %s --to mp4` "
                        "rebuilds the video from the frames in the segment's log", p, directory)
            p.unlink()
    for part in [p for p in list_segments(directory) if p.name.endswith(PART_SUFFIX) and p not in keep]:
        final = part.with_name(part.name.removesuffix(PART_SUFFIX))
        tmp = final.with_name(final.name + RECOVERING_SUFFIX)
        scan = SegmentScan(part)
        writer = SegmentWriter(final, part_path=tmp, fsync_interval_s=3600)
        try:
            for rec in iter_raw(part, scan):  # every channel: rtseg's and the Foxglove ones
                writer.write_raw(rec.topic, rec.message_encoding, rec.schema, rec.data, log_time_ns=rec.log_time_ns,
                                 publish_time_ns=rec.publish_time_ns, sequence=rec.sequence, metadata=rec.metadata)
                if writer.records % 500 == 0:
                    beat()
        except RecordingError:
            writer.abandon()
            tmp.unlink(missing_ok=True)
            raise
        if writer.records == 0:
            writer.abandon()
            tmp.unlink()
            part.unlink()
            log.info("removed %s: it held no complete record", part)
            continue
        writer.close({"recovered_from": part.name, "incomplete_tail_bytes": str(scan.tail_bytes)})
        part.unlink()
        fsync_dir(directory)
        log.warning("recovered %s -> %s: %d complete record(s)%s", part.name, final.name, writer.records,
                    f", {scan.tail_bytes} byte(s) of a torn last record dropped" if scan.tail_bytes else "")
        recovered.append(final)
    return recovered


# --------------------------------------------------------------------------- retention
def _groups(directory: Path) -> dict[str, list[Path]]:
    """Closed segments by stem, each with its closed videos."""
    groups: dict[str, list[Path]] = {}
    for p in directory.iterdir():
        m = _SEGMENT_RE.match(p.name)
        if m and m.group(2) is None:
            groups.setdefault(m.group(1), []).insert(0, p)
    for p in directory.iterdir():
        m = _VIDEO_RE.match(p.name)
        if m and not m.group(3) and m.group(1) in groups:
            groups[m.group(1)].append(p)
    return groups


def _bytes_on_disk(paths: Iterable[Path]) -> int:
    """The files' sizes summed; one deleted meanwhile (by retention or recovery) counts 0."""
    total = 0
    for p in paths:
        try:
            total += p.stat().st_size
        except FileNotFoundError:
            pass
    return total


def recording_bytes(directory: Path) -> int:
    """Bytes of every segment and video file in the folder, open ones included."""
    return _bytes_on_disk(p for p in directory.iterdir() if _SEGMENT_RE.match(p.name) or _VIDEO_RE.match(p.name))


def enforce_retention(directory: Path, *, max_bytes: float | None, max_age_s: float | None,
                      now: float | None = None) -> list[Path]:
    """Delete closed segments (with their videos), oldest first, while the folder holds more
    than `max_bytes` or a segment was closed more than `max_age_s` ago. The open segment is
    never deleted. Returns the deleted files."""
    if max_bytes is None and max_age_s is None:
        return []
    now = time.time() if now is None else now
    groups = _groups(directory)
    total = recording_bytes(directory) if max_bytes is not None else 0
    deleted: list[Path] = []
    for stem in sorted(groups):
        files = groups[stem]
        try:
            closed_at = files[0].stat().st_mtime
            size = sum(p.stat().st_size for p in files)
        except FileNotFoundError:
            continue
        too_old = max_age_s is not None and now - closed_at > max_age_s
        too_big = max_bytes is not None and total > max_bytes
        if not (too_old or too_big):
            break  # newer segments are younger and the folder is small enough
        for p in files:
            p.unlink(missing_ok=True)
            deleted.append(p)
        total -= size
        log.info("retention: deleted %s (%s)", stem, "older than retention_hours" if too_old
                 else "recording larger than retention_gb")
    if max_bytes is not None and total > max_bytes:
        log.warning("retention: the open segment alone (%d bytes) exceeds retention_gb (%d bytes); "
                    "use shorter segments (recorder.segment_seconds)", total, int(max_bytes))
    return deleted

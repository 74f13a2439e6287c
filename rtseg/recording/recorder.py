"""`rtseg record`: subscribe to the segmenter and write a recording that survives crashes.

Reacts to: masks.<camera>, prompt.<camera>, event.<camera>, status, and frame.<camera> when recorder.video is
raw or overlay or recorder.frames is on (the segmenter must publish it:
network.frame_topic.enabled). Emits nothing. With recorder.foxglove (default), each message is
also written on Foxglove channels (rtseg.bridges.foxglove_messages), so a segment opens in Foxglove
with video and masks.
Logs a warning naming the endpoint when nothing has arrived for 10 s (120 s under `rtseg run`,
whose segmenter may take that long to build its model).

Every message goes into MCAP segments (rtseg.recording.segment: one CRC-checked chunk per
record, one write() each); a segment is fsync'd and renamed from `.part` when it closes after
`segment_seconds`. On start, `.part` files a crash left are turned into closed segments, and
retention deletes the oldest segments beyond `retention_gb` / `retention_hours`. A folder that
cannot be written (full disk, read-only, no permission) stops the recorder with exit code 2
(EXIT_FATAL) and a message saying what to do; the segmenter never waits for the recorder.
"""
from __future__ import annotations

import errno
import fcntl
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable


from rtseg.config import Config, RecorderConfig
from rtseg.proc import EXIT_FATAL, EXIT_OK, setup_child_logging, stop_on_sigterm
from rtseg.protocol import EVENT, FRAME, MASKS, PROMPT, PROTOCOL_VERSION, STATUS
from rtseg.recording.draw import RecentMasks, draw_masks
from rtseg.recording.segment import RecordingWriteError, SchemaInfo, SegmentWriter, write_error
from rtseg.recording.store import enforce_retention, new_segment_path, recover_parts, video_path
from rtseg.recording.video import Mp4Writer

log = logging.getLogger("rtseg.recording.recorder")

LOCK_NAME = ".rtseg-recorder.lock"
PIPELINE_SILENCE_WARNING_S = 120.0


class Recorder:
    """Records what `endpoint` publishes into `config.directory`. `run()` returns the exit code."""

    def __init__(self, config: RecorderConfig, endpoint: str, *, cameras: list[str] | None = None,
                 video_fps: float = 5.0, curve: Any = None, context: Any = None, silence_warning_s: float = 10.0,
                 cluster: bool = False):
        self.config = config
        self.silence_warning_s = silence_warning_s  # warn when nothing arrived for this long
        self.endpoint = endpoint
        self.cluster = cluster  # endpoint is the directory of `rtseg cluster`: follow the cameras
        self.cameras = cameras
        self.video_fps = video_fps
        self.curve = curve
        self.context = context
        self.directory = Path(config.directory)
        self.segment: SegmentWriter | None = None
        self.videos: dict[str, Mp4Writer] = {}
        self.recent_masks = RecentMasks()  # to draw masks on the frame of the same index
        self.closed_segments: list[Path] = []
        self._lock_fd = -1
        self._dropped_at_open = 0
        self._subscriber: Any = None
        self._last_arrival = time.monotonic()
        self._silent = False

    # ------------------------------------------------------------------ set-up
    def _prepare(self, beat: Callable[[], None]) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise write_error("create the recording folder", self.directory, e) from None
        lock = self.directory / LOCK_NAME
        try:
            self._lock_fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise write_error("write in the recording folder; creating", lock, e) from None
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(self._lock_fd, 32, 0).decode(errors="replace").strip() or "?"
            raise RecordingWriteError(f"another recorder (pid {other}) is writing to {self.directory}; stop it "
                                      f"or give this one another recorder.directory", errno.EBUSY) from None
        try:
            os.ftruncate(self._lock_fd, 0)
            os.pwrite(self._lock_fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as e:
            raise write_error("write in the recording folder; writing", lock, e) from None
        try:
            recover_parts(self.directory, beat=beat)
            self._retention()
        except OSError as e:
            raise write_error("clean up the recording folder", self.directory, e) from None

    def _retention(self) -> None:
        rc = self.config
        enforce_retention(self.directory, max_bytes=rc.retention_gb * 1e9 if rc.retention_gb else None,
                          max_age_s=rc.retention_hours * 3600 if rc.retention_hours else None)

    # ----------------------------------------------------------------- writing
    def _open_segment(self) -> SegmentWriter:
        path = new_segment_path(self.directory)
        self.segment = SegmentWriter(path, fsync_interval_s=self.config.fsync_interval_s)
        self._dropped_at_open = self._dropped()
        log.info("recording into %s", self.segment.part_path)
        return self.segment

    def _dropped(self) -> int:
        """Messages the subscriber has seen lost so far (gaps in the publisher's seq); 0 without one."""
        return self._subscriber.stats()["dropped"] if self._subscriber else 0

    def _close_segment(self) -> None:
        segment, self.segment = self.segment, None
        if segment is None:
            return
        dropped = self._dropped() - self._dropped_at_open
        if dropped:
            log.warning("%d message(s) were lost before reaching the recorder during %s (the recorder or the "
                        "disk was too slow, or the publisher's network.hwm is too small)", dropped, segment.path.name)
        path = segment.close({"records": str(segment.records), "lost_messages": str(dropped),
                              "protocol_version": str(PROTOCOL_VERSION), "endpoint": self.endpoint})
        videos, self.videos = self.videos, {}
        for video in videos.values():
            video.close()
        self.closed_segments.append(path)
        log.info("closed %s: %d record(s)", path.name, segment.records)
        try:
            self._retention()
        except OSError as e:
            raise write_error("delete old segments in", self.directory, e) from None

    def record(self, item: Any) -> None:
        """Write one received item (a rtseg.client result) into the open segment."""
        from rtseg.client import FrameImage, Masks

        msg = item.message if isinstance(item, Masks | FrameImage) else item
        segment = self.segment or self._open_segment()
        log_time_ns = time.time_ns()
        segment.write_message(msg, log_time_ns=log_time_ns)
        if self.config.foxglove:
            self._write_foxglove(segment, msg, log_time_ns)
        if isinstance(item, Masks):
            self.recent_masks.add(item.message)
        elif isinstance(item, FrameImage) and self.config.video in ("raw", "overlay"):
            self._write_video(item)

    def _write_foxglove(self, segment: SegmentWriter, msg: Any, log_time_ns: int) -> None:
        """The same message on the Foxglove channels (rtseg.bridges.foxglove_messages), each its own record."""
        from rtseg.bridges.foxglove_messages import to_foxglove

        messages, errors = to_foxglove(msg)
        for text in errors:
            log.warning("recorder: %s frame %s: %s (left out of the Foxglove channel)", msg.camera,
                        getattr(msg, "frame_index", "?"), text)
        for m in messages:
            s = m.schema
            segment.write_raw(m.topic, m.message_encoding, SchemaInfo(s.name, s.encoding, s.data), m.data,
                              log_time_ns=log_time_ns, publish_time_ns=m.log_time_ns, sequence=msg.seq)

    def _write_video(self, frame: Any) -> None:
        video = self.videos.get(frame.camera)
        if video is None:
            assert self.segment is not None
            video = Mp4Writer(video_path(self.segment.path, frame.camera, part=False), self.video_fps,
                              part_path=video_path(self.segment.path, frame.camera, part=True))
            self.videos[frame.camera] = video
        image = frame.image
        if self.config.video == "overlay":
            image = draw_masks(image, self.recent_masks.for_frame(frame.camera, frame.frame_index))
        video.write(image)

    def _abandon(self) -> None:
        if self.segment is not None:
            self.segment.abandon()
            self.segment = None
        for video in self.videos.values():
            video.abandon()
        self.videos = {}

    def _note_arrival(self, arrived: bool) -> None:
        """Warn once, naming the endpoint, when nothing has arrived for `silence_warning_s`."""
        now = time.monotonic()
        if arrived:
            if self._silent:
                log.info("messages arrive again from %s", self.endpoint)
            self._last_arrival, self._silent = now, False
        elif not self._silent and now - self._last_arrival >= self.silence_warning_s:
            self._silent = True
            log.warning("nothing has arrived from %s for %.0f s: is a segmenter running and publishing there "
                        "(its network.pub%s)? Still waiting.", self.endpoint, now - self._last_arrival,
                        ", and are the CURVE keys accepted" if self.curve is not None else "")

    # -------------------------------------------------------------------- loop
    def run(self, should_stop: Callable[[], bool], beat: Callable[[], None] = lambda: None) -> int:
        """Record until `should_stop()`; `beat()` is called at least every 0.25 s while idle."""
        from rtseg.client import Subscriber

        frames = self.config.video != "none" or self.config.frames
        topics = [MASKS, PROMPT, EVENT, STATUS] + ([FRAME] if frames else [])
        try:
            beat()
            self._prepare(beat)
            self._subscriber = Subscriber(None if self.cluster else self.endpoint, self.cameras, topics,
                                          decode_masks=False, rcvhwm=1000, curve=self.curve, context=self.context,
                                          cluster=self.endpoint if self.cluster else None)
            log.info("recording %s from %s into %s (segments of %g s, video %s)", "/".join(topics),
                     self.endpoint, self.directory, self.config.segment_seconds, self.config.video)
            if frames:
                log.info("frames need the segmenter's frame topic (network.frame_topic.enabled: true)")
            self._last_arrival = time.monotonic()
            while not should_stop():
                beat()
                item = self._subscriber.recv(timeout=0.2)
                self._note_arrival(item is not None)
                if item is not None:
                    self.record(item)
                elif self.segment is not None:
                    self.segment.sync_if_due()
                if self.segment is not None and self.segment.age_s() >= self.config.segment_seconds:
                    self._close_segment()
            self._close_segment()
            return EXIT_OK
        except RecordingWriteError as e:
            log.error("recorder stopped: %s. The segmenter keeps running; what was recorded "
                      "so far stays readable.", e)
            self._abandon()
            return EXIT_FATAL
        finally:
            if self._subscriber is not None:
                self._subscriber.close()
            if self._lock_fd >= 0:
                os.close(self._lock_fd)
                self._lock_fd = -1


def recorder_main(cfg: Config, stop_event: Any, heartbeat: Any, log_queue: Any) -> None:
    """Process entry point (spawned by the supervisor); exits EXIT_FATAL when the folder
    cannot be written. Reacts to / emits: see the module doc."""
    stop_on_sigterm(stop_event.set)
    setup_child_logging(log_queue, cfg.log_level)

    def beat() -> None:
        heartbeat.value = time.time()

    from rtseg.security import CurveKeyError, pipeline_client

    try:
        curve = pipeline_client(cfg.security)
    except CurveKeyError as e:
        log.error("recorder cannot subscribe: %s", e)
        raise SystemExit(EXIT_FATAL) from None
    # the segmenter started beside it may build its model for minutes on a CPU, and the supervisor
    # watches it anyway: warn of silence later than `rtseg record` on its own does
    recorder = Recorder(cfg.recorder, cfg.network.pub, video_fps=cfg.network.frame_topic.fps, curve=curve,
                        silence_warning_s=PIPELINE_SILENCE_WARNING_S)
    code = recorder.run(stop_event.is_set, beat)
    if code:
        raise SystemExit(code)

"""The viewer's data side, off the GUI thread: frames in, masks in, newest composed view out.

Threads (all daemons, stopped by `Feed.stop()`):
- messages: a SUB socket on masks.<camera>, status, prompt.<camera>, event.<camera> (and
  frame.<camera>, the JPEG topic, when there is no ring). Reacts to every message; emits nothing.
- ring (same host only): every frame of the camera's shared-memory ring, plus its capture
  status twice a second.
- compose: whenever something arrived, picks what to show (`Matcher`), decodes the masks
  and draws them (`overlay`) over the zones (amber while occupied) and the last-seen boxes
  of hidden objects, and keeps only the newest result (`Feed.latest_view()`).

Masks are drawn on the frame they were computed from (matched by capture `frame_index`): the
feed keeps the last `frame_buffer` frames, and shows the newest frame that has its masks. When
no masks come (segmenter down) it shows the live frames without masks; when no frames come
(a remote viewer without the JPEG topic) it draws the masks on a dark canvas.
"""
from __future__ import annotations

import logging
import statistics
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import zmq

from rtseg.client import FrameImage, Masks, Subscriber
from rtseg.protocol import (
    EVENT,
    FRAME,
    MASKS,
    PROMPT,
    STATUS,
    CameraStatus,
    MasksMessage,
    ObjectEvent,
    PromptEvent,
    StatusMessage,
)
from rtseg.view.hud import describe_source
from rtseg.view.overlay import (
    DecodedObject,
    OverlayStyle,
    blank_canvas,
    decode_objects,
    draw_last_seen,
    draw_overlay,
    draw_zones,
)

log = logging.getLogger(__name__)

MASKS_KEPT = 64  # masks messages waiting for their frame (remote: the frame comes after them)
EVENTS_KEPT = 100  # object events listed by the window
SOURCE_POLL_S = 0.5
STATUS_STALE_S = 5.0  # a status message older than this no longer tells the camera's state


@dataclass(frozen=True, eq=False)
class HeldFrame:
    index: int  # capture frame index (prompts name frames by it)
    image: np.ndarray  # HxWx3 uint8 RGB
    capture_ns: int  # monotonic, capture host
    capture_wall_ns: int
    seq: int = 0  # arrival order in this viewer


@dataclass(frozen=True, eq=False)
class MasksEntry:
    message: MasksMessage
    received_s: float  # time.monotonic() here

    @property
    def index(self) -> int:
        return self.message.frame_index


@dataclass(frozen=True, eq=False)
class View:
    """What the window shows: `image` is `frame` with `objects` drawn on it. `frame_index` is
    the displayed frame's capture index (None on the masks-only canvas); `matched` says the
    drawn masks were computed from this very frame."""

    serial: int
    frame_index: int | None
    masks_index: int | None
    matched: bool
    image: np.ndarray
    frame: np.ndarray
    objects: tuple[DecodedObject, ...]
    selected: int | None = None
    capture_wall_ns: int | None = None  # the shown frame's (or, on the canvas, the masks') capture wall clock
    held: HeldFrame | None = None  # what it was composed from (to compose again: new selection, zones)
    masks: MasksEntry | None = None

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        return int(self.image.shape[0])


@dataclass
class _Shown:
    frame_seq: int | None
    masks_index: int | None
    matched: bool
    at_s: float


class Matcher:
    """Recent frames and masks, and the rule for what to show next (no threads, no I/O).

    `choose(now)` returns (frame, masks) to compose, either possibly None, or None to keep
    what is shown: the newest frame that has its masks, if newer than the shown one (a slow
    segmenter slows the picture down, it never puts masks on the wrong frame); the newest
    frame alone before the first masks, when masks stopped coming (`stale_s`), or when they
    are for frames older than every held one; the newest masks alone (canvas) when no frame
    arrived for `stale_s`."""

    def __init__(self, frame_buffer: int = 30, stale_s: float = 1.0, now: float | None = None) -> None:
        if frame_buffer < 1:
            raise ValueError(f"frame_buffer must be at least 1 frame, got {frame_buffer}")
        self.frame_buffer = frame_buffer
        self.stale_s = stale_s
        self.frames: OrderedDict[int, HeldFrame] = OrderedDict()  # index -> frame, arrival order
        self.masks: OrderedDict[int, MasksEntry] = OrderedDict()
        self._seq = 0
        self._shown: _Shown | None = None
        self._last_frame_s: float | None = None
        self._last_masks_s: float | None = None
        self._late = False
        self._started = time.monotonic() if now is None else now

    def add_frame(self, frame: HeldFrame, now: float) -> None:
        if self.frames and frame.index <= next(reversed(self.frames)):
            # indices start again after a capture restart: older frames and masks are of another run
            self.frames.clear()
            self.masks.clear()
            self._late = False
        self._seq += 1
        self.frames[frame.index] = replace(frame, seq=self._seq)
        while len(self.frames) > self.frame_buffer:
            self.frames.popitem(last=False)
        self._last_frame_s = now

    def add_masks(self, entry: MasksEntry) -> None:
        if self.masks and entry.index <= next(reversed(self.masks)):
            self.masks.clear()
        self.masks[entry.index] = entry
        self._late = bool(self.frames) and entry.index < next(iter(self.frames))
        while len(self.masks) > MASKS_KEPT:
            self.masks.popitem(last=False)
        self._last_masks_s = entry.received_s

    def masks_fresh(self, now: float) -> bool:
        return self._last_masks_s is not None and now - self._last_masks_s <= self.stale_s

    def masks_age(self, now: float) -> float:
        return 0.0 if self._last_masks_s is None else now - self._last_masks_s

    def masks_behind(self) -> bool:
        """The newest masks came for a frame older than every frame held when they came:
        the segmenter lags more than the frame buffer holds, so they can never match."""
        return self._late

    def choose(self, now: float) -> tuple[HeldFrame | None, MasksEntry | None] | None:
        shown = self._shown
        shown_seq = -1 if shown is None or shown.frame_seq is None else shown.frame_seq
        pair = next((f for f in reversed(self.frames.values()) if f.index in self.masks), None)
        if pair is not None and (shown is None or not shown.matched or pair.seq > shown_seq):
            return pair, self.masks[pair.index]
        newest = next(reversed(self.frames.values()), None)
        if newest is not None and newest.seq > shown_seq:
            if shown is None or not self.masks_fresh(now) or self.masks_behind():
                return newest, None  # nothing shown yet, no masks coming, or masks that cannot match
        if newest is None and self.masks and now - max(self._started, self._last_frame_s or 0) > self.stale_s:
            masks = next(reversed(self.masks.values()))
            if shown is None or shown.frame_seq is not None or shown.masks_index != masks.index:
                return None, masks
        return None

    def mark_shown(self, frame: HeldFrame | None, masks: MasksEntry | None, now: float) -> None:
        self._shown = _Shown(None if frame is None else frame.seq, None if masks is None else masks.index,
                             frame is not None and masks is not None, now)

    @property
    def shown_matched(self) -> bool | None:
        return None if self._shown is None else self._shown.matched


@dataclass(frozen=True)
class FeedStats:
    masks_fps: float
    latency_ms: float | None  # median of the last 30: capture -> masks received here
    skipped: int  # the segmenter's skipped frames on this camera
    lost_messages: int
    source: str  # words for the operator (hud.describe_source)
    note: str  # what is wrong, if anything
    frames_received: int
    masks_received: int
    composed: int  # views composed (decode + draw)
    compose_ms: float | None  # median time to compose one, over the last 100


class Feed:
    """Receive, match and compose in background threads. `ring` set: frames from that
    shared-memory ring (same host); else from the JPEG topic `frame.<camera>` (any host)."""

    def __init__(self, camera: str, pub: str, *, ring: str | None = None, frame_buffer: int = 30,
                 style: OverlayStyle = OverlayStyle(), curve: Any = None, context: zmq.Context | None = None,
                 stale_s: float = 1.0, zones: tuple[tuple[str, tuple], ...] = (), cluster: bool = False) -> None:
        self.camera = camera
        self.zones = tuple(zones)  # (name, polygon in source pixels)
        self._events: deque[ObjectEvent] = deque(maxlen=EVENTS_KEPT)
        self._events_serial = 0
        self._occupants: dict[str, set[int]] = {}  # zone -> objects inside (from the event topic)
        self._last_seen: dict[int, tuple[float, float, float, float]] = {}  # obj -> last non-empty box
        self.pub = pub
        self.ring = ring
        self.style = style
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._dirty = False
        self._stop = threading.Event()
        self._matcher = Matcher(frame_buffer, stale_s)
        self._view: View | None = None
        self._serial = 0
        self._selected: int | None = None
        self._restyle = False
        self._masks_times: deque[float] = deque(maxlen=120)
        self._latencies: deque[float] = deque(maxlen=30)
        self._skipped = 0
        self._lost = 0
        self._counts = {"frames": 0, "masks": 0, "composed": 0}
        self._compose_ms: deque[float] = deque(maxlen=100)
        self._status: CameraStatus | None = None
        self._status_s: float | None = None
        self._ring_source: str | None = None
        self._ring_note = ""
        self._errors: deque[tuple[float, str]] = deque(maxlen=4)
        self._objects: tuple[int, tuple[int, ...], dict[int, float], dict[int, int], dict[int, str]] = (
            0, (), {}, {}, {})
        self._started_s = time.monotonic()
        topics = (MASKS, STATUS, PROMPT, EVENT) if ring else (MASKS, STATUS, PROMPT, EVENT, FRAME)
        # created here so that a bad endpoint fails in the caller; used only by the messages thread
        # cluster: `pub` is the directory of `rtseg cluster`; the subscriber follows the camera
        self._subscriber = Subscriber(None if cluster else pub, cameras=[camera], topics=topics, curve=curve,
                                      decode_masks=False, context=context, cluster=pub if cluster else None)
        self._threads = [threading.Thread(target=self._guard, args=(self._messages_loop,), name="view-messages",
                                          daemon=True),
                         threading.Thread(target=self._guard, args=(self._compose_loop,), name="view-compose",
                                          daemon=True)]
        if ring:
            self._threads.append(threading.Thread(target=self._guard, args=(self._ring_loop,), name="view-ring",
                                                  daemon=True))

    # ------------------------------------------------------------ lifecycle
    def start(self) -> Feed:
        for t in self._threads:
            t.start()
        return self

    def stop(self, timeout_s: float = 2.0) -> None:
        self._stop.set()
        with self._wake:
            self._wake.notify_all()
        for t in self._threads:
            if t.is_alive():
                t.join(timeout_s)
        self._subscriber.close()

    def __enter__(self) -> Feed:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _guard(self, loop: Any) -> None:
        try:
            loop()
        except Exception:  # a bug: say so in the log and on the HUD, do not die silently
            log.exception("viewer: %s thread failed", threading.current_thread().name)
            self._error(f"{threading.current_thread().name} failed (see the log)")

    def _error(self, text: str) -> None:
        with self._lock:
            self._errors.append((time.monotonic(), text))

    def _poke(self) -> None:
        """Under self._lock: something new arrived; wake the composer."""
        self._dirty = True
        self._wake.notify()

    # ------------------------------------------------------------ GUI side
    def latest_view(self) -> View | None:
        with self._lock:
            return self._view

    def set_selected(self, obj_id: int | None) -> None:
        """Draw this object's outline thicker from now on (the shown view is redrawn)."""
        with self._lock:
            if obj_id != self._selected:
                self._selected = obj_id
                self._restyle = True
                self._poke()

    def objects(self) -> tuple[int, tuple[int, ...], dict[int, float], dict[int, int], dict[int, str]]:
        """(serial, ids, scores, areas, states) from the newest masks message or prompt event;
        the serial changes whenever they do."""
        with self._lock:
            return self._objects

    def events(self) -> tuple[int, list[ObjectEvent]]:
        """(serial, the newest object events, oldest first); the serial changes with each event."""
        with self._lock:
            return self._events_serial, list(self._events)

    def occupied_zones(self) -> list[str]:
        with self._lock:
            return sorted(z for z, ids in self._occupants.items() if ids)

    def stats(self) -> FeedStats:
        now = time.monotonic()
        with self._lock:
            times = [t for t in self._masks_times if now - t <= 2.0]
            fps = (len(times) - 1) / (times[-1] - times[0]) if len(times) >= 2 and times[-1] > times[0] else 0.0
            latency = statistics.median(self._latencies) if self._latencies else None
            if self._ring_source is not None:
                source = self._ring_source
            elif self._status is not None and self._status_s is not None and now - self._status_s <= STATUS_STALE_S:
                source = describe_source(self._status.source_state)
            elif self._status_s is not None:
                source = f"{describe_source(None)} (no status for {now - self._status_s:.0f} s)"
            else:
                source = describe_source(None)
            compose_ms = statistics.median(self._compose_ms) if self._compose_ms else None
            return FeedStats(fps, latency, self._skipped, self._lost, source, self._note(now),
                             self._counts["frames"], self._counts["masks"], self._counts["composed"], compose_ms)

    def _note(self, now: float) -> str:
        m = self._matcher
        age = now - self._started_s
        errors = [text for t, text in self._errors if now - t < 5.0]
        if errors:
            return errors[-1]
        if self._ring_note:
            return self._ring_note
        if not self._counts["masks"] and age > 3.0:
            return f"no masks from {self.pub} yet: is the segmenter running (camera {self.camera!r})?"
        if self._counts["masks"] and not m.masks_fresh(now):
            return f"no masks for {m.masks_age(now):.0f} s"
        if not self.ring and not self._counts["frames"] and self._counts["masks"] and age > 3.0:
            return ("no video: enable network.frame_topic on the segmenter, or run the viewer on its host "
                    "with --ring")
        if m.masks_behind() and m.masks_fresh(now):
            return ("masks arrive later than the frame buffer holds frames: raise viewer.frame_buffer "
                    "(--frame-buffer)")
        return ""

    # ------------------------------------------------------------ threads
    def _messages_loop(self) -> None:
        sub = self._subscriber
        while not self._stop.is_set():
            try:
                msg = sub.recv(timeout=0.1)
            except zmq.ZMQError as e:
                if self._stop.is_set():
                    return
                log.error("viewer: receiving from %s failed: %s", self.pub, e)
                self._error(f"receiving from {self.pub} failed: {e}")
                time.sleep(0.5)
                continue
            if msg is None:
                continue
            now = time.monotonic()
            with self._lock:
                self._lost = sub.stats()["dropped"]
                if isinstance(msg, Masks):
                    self._on_masks(msg, now)
                elif isinstance(msg, FrameImage):
                    self._counts["frames"] += 1
                    self._matcher.add_frame(HeldFrame(msg.frame_index, msg.image, msg.capture_ns,
                                                      msg.capture_wall_ns), now)
                    self._poke()
                elif isinstance(msg, StatusMessage):
                    if self.camera in msg.cameras:
                        self._status, self._status_s = msg.cameras[self.camera], now
                elif isinstance(msg, PromptEvent):
                    serial, _, scores, areas, states = self._objects
                    self._objects = (serial + 1, tuple(sorted(msg.obj_ids)), scores, areas, states)
                elif isinstance(msg, ObjectEvent):
                    self._on_event(msg)

    def _on_event(self, ev: ObjectEvent) -> None:
        """Under self._lock."""
        self._events.append(ev)
        self._events_serial += 1
        if ev.event == "entered_zone" and ev.zone:
            self._occupants.setdefault(ev.zone, set()).add(ev.obj_id)
        elif ev.event == "left_zone" and ev.zone:
            self._occupants.setdefault(ev.zone, set()).discard(ev.obj_id)
        elif ev.event == "removed":
            self._last_seen.pop(ev.obj_id, None)
        if ev.event in ("occluded", "lost") and any(ev.box):
            self._last_seen[ev.obj_id] = ev.box
        self._restyle = True
        self._poke()

    def _on_masks(self, masks: Masks, now: float) -> None:
        """Under self._lock."""
        msg = masks.message
        self._counts["masks"] += 1
        self._masks_times.append(now)
        if self.ring:  # same host: one monotonic clock
            self._latencies.append((masks.received_ns - msg.capture_ns) / 1e6)
        else:  # other host: wall clocks, as good as their synchronisation
            self._latencies.append((time.time_ns() - msg.capture_wall_ns) / 1e6)
        self._skipped = msg.skipped_total
        serial = self._objects[0] + 1
        self._objects = (serial, tuple(o.obj_id for o in msg.objects), {o.obj_id: o.score for o in msg.objects},
                         {o.obj_id: o.area for o in msg.objects},
                         {o.obj_id: o.state for o in msg.objects if o.state is not None})
        for o in msg.objects:
            if o.area and any(o.box):
                self._last_seen[o.obj_id] = o.box
        self._matcher.add_masks(MasksEntry(msg, now))
        self._poke()

    def _ring_loop(self) -> None:
        from rtseg.ring import RingError, RingReader

        reader = None
        next_poll = 0.0
        try:
            while not self._stop.is_set():
                if reader is None:
                    try:
                        reader = RingReader(self.ring, wait_s=0.0)
                        with self._lock:
                            self._ring_note = ""
                    except RingError:
                        with self._lock:
                            self._ring_note = (f"waiting for ring {self.ring!r}: is the capture of camera "
                                               f"{self.camera!r} running on this host?")
                            self._ring_source = describe_source(None)
                        self._stop.wait(0.5)
                        continue
                now = time.monotonic()
                try:
                    if now >= next_poll:
                        next_poll = now + SOURCE_POLL_S
                        st = reader.source_state()
                        with self._lock:
                            self._ring_source = describe_source(st.status, st.attempt, st.message)
                    rf = reader.next(timeout_s=0.1)
                except (RingError, OSError, ValueError) as e:  # the ring went away under us: attach again
                    log.warning("viewer: reading ring %r failed (%s); attaching again", self.ring, e)
                    reader.close()
                    reader = None
                    self._stop.wait(0.5)
                    continue
                if rf is None:
                    continue
                f = rf.frame
                with self._lock:
                    self._counts["frames"] += 1
                    self._matcher.add_frame(HeldFrame(f.index, f.image, f.t_mono_ns, f.t_wall_ns), time.monotonic())
                    self._poke()
        finally:
            if reader is not None:
                reader.close()

    def _compose_loop(self) -> None:
        while not self._stop.is_set():
            with self._wake:
                if not self._dirty:
                    self._wake.wait(0.1)  # also wakes up for time-based choices (stale masks)
                self._dirty = False
                now = time.monotonic()
                choice = self._matcher.choose(now)
                if choice is not None:
                    self._matcher.mark_shown(*choice, now)
                restyle, self._restyle = self._restyle, False
                selected, current = self._selected, self._view
                occupied = [z for z, ids in self._occupants.items() if ids]
                last_seen = dict(self._last_seen)
            t0 = time.perf_counter()
            if choice is not None:
                view = self._compose(*choice, selected, occupied, last_seen)
            elif restyle and current is not None:
                view = self._compose(current.held, current.masks, selected, occupied, last_seen)
            else:
                continue
            with self._lock:
                self._serial += 1
                self._view = replace(view, serial=self._serial)
                self._counts["composed"] += 1
                self._compose_ms.append((time.perf_counter() - t0) * 1e3)

    def _compose(self, frame: HeldFrame | None, masks: MasksEntry | None, selected: int | None,
                 occupied: list[str] = (), last_seen: dict | None = None) -> View:  # type: ignore[assignment]
        objects: list[DecodedObject] = []
        if masks is not None:
            msg = masks.message
            objects, errors = decode_objects(msg.objects, msg.width, msg.height)
            for text in errors:
                log.warning("viewer: masks of frame %d: %s", msg.frame_index, text)
                self._error(f"bad mask in frame {msg.frame_index}: {text}")
        if frame is not None:
            base = frame.image
        else:
            base = blank_canvas(masks.message.width, masks.message.height)  # type: ignore[union-attr]
        if self.zones:
            base = draw_zones(base, self.zones, occupied)
        hidden = {o.obj_id: ((last_seen or {}).get(o.obj_id, (0, 0, 0, 0)), o.state) for o in objects
                  if o.hidden and o.crop.size == 0}
        if hidden:
            base = draw_last_seen(base, hidden)
        image = draw_overlay(base, objects, self.style, selected) if objects else base
        wall_ns = frame.capture_wall_ns if frame is not None else masks.message.capture_wall_ns  # type: ignore[union-attr]
        return View(0, None if frame is None else frame.index, None if masks is None else masks.index,
                    frame is not None and masks is not None, image, base, tuple(objects), selected, wall_ns, frame,
                    masks)

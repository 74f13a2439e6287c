"""The writing half of the ring: RingWriter (one per ring name, in the capture process)."""
from __future__ import annotations

import logging
import os
import secrets
import time
from collections.abc import Callable
from multiprocessing.shared_memory import SharedMemory
from types import TracebackType

import numpy as np

from rtseg.ring.layout import (
    FUTEX,
    MAGIC,
    MESSAGE_BYTES,
    MESSAGE_OFF,
    SHM_DIR,
    SLOT_FIELDS,
    SLOTS_OFF,
    SOURCE_ID_BYTES,
    SOURCE_ID_OFF,
    STATUSES,
    VERSION,
    F,
    Header,
    RingError,
    S,
    data_segment,
    header_segment,
    open_segment,
    process_alive,
    process_start_ms,
    unlink_ring,
    unlink_segment,
)
from rtseg.sources.base import Frame

log = logging.getLogger(__name__)


class RingWriter:
    """Creates ring `name` and writes frames into it; never blocks. One writer per name: a
    live writer of the same name is an error, a dead one's segments are reclaimed."""

    def __init__(self, name: str, *, slots: int = 8, source_id: str = "") -> None:
        if slots < 2:
            raise RingError(f"a ring needs at least 2 slots, got {slots}")
        self.name, self.slots = name, slots
        self._seg = header_segment(name)
        generation = self._reclaim_stale()
        size = SLOTS_OFF + slots * SLOT_FIELDS * 8
        try:
            self._h = Header(open_segment(self._seg, size))
        except FileExistsError:
            raise RingError(f"another writer created ring {name!r} just now; run one capture "
                            "process per ring name") from None
        f = self._h.f
        f[:] = 0
        f[F.VERSION], f[F.SLOTS], f[F.UID] = VERSION, slots, secrets.randbits(62)
        f[F.PID], f[F.PID_START_MS] = os.getpid(), process_start_ms(os.getpid())
        f[F.GENERATION], f[F.WRITE_SEQ], f[F.END_SEQ], f[F.CONSUMED_SEQ] = generation, -1, -1, -1
        f[F.HEARTBEAT_NS], f[F.STATUS_WALL_NS] = time.monotonic_ns(), time.time_ns()
        self._h.map_slots()
        self._h.slots[:] = 0
        self._h.slots[:, S.SEQ] = -1
        self._h.set_text(SOURCE_ID_OFF, SOURCE_ID_BYTES, source_id)
        f[F.MAGIC] = MAGIC  # last: a reader that sees the magic sees a complete header
        self._gen, self._size, self._seq, self._count = generation - 1, (0, 0), -1, 0
        self._data: SharedMemory | None = None
        self._pixels: np.ndarray | None = None
        self._closed = False

    def _reclaim_stale(self) -> int:
        """Remove a dead writer's segments; the new generation continues after its last."""
        try:
            old = Header(open_segment(self._seg))
        except FileNotFoundError:
            return 1
        except (ValueError, RingError):  # empty or foreign segment of our name
            self._refuse_if_young()
            unlink_ring(self.name)
            return 1
        f = old.f
        pid, gen, valid = int(f[F.PID]), int(f[F.GENERATION]), int(f[F.MAGIC]) == MAGIC
        alive = valid and not f[F.CLOSED] and process_alive(pid, int(f[F.PID_START_MS]))
        old.drop()
        if not valid:
            self._refuse_if_young()
        if alive:
            raise RingError(
                f"ring {self.name!r} already has a live writer (pid {pid}); stop that capture "
                f"process or use another ring name"
            )
        unlink_ring(self.name)
        log.warning("reclaimed ring %r left behind by pid %d", self.name, pid)
        return gen + 1 if valid else 1

    def _refuse_if_young(self, min_age_s: float = 5.0) -> None:
        """A header that is not complete yet may be another writer starting right now."""
        try:
            age = time.time() - (SHM_DIR / self._seg).stat().st_mtime
        except FileNotFoundError:
            return
        if age < min_age_s:
            raise RingError(f"ring {self.name!r} is being created by another process right now; "
                            "run one capture process per ring name")

    def _new_generation(self, width: int, height: int) -> None:
        self._gen += 1
        old = self._data
        self._pixels = None
        self._data = open_segment(data_segment(self.name, self._gen), self.slots * height * width * 3)
        self._pixels = np.ndarray((self.slots, height, width, 3), np.uint8, self._data.buf)
        self._pixels.fill(0)  # fault every page in now, not in the first lap of writes
        h = self._h
        h.slots[:, S.SEQ] = -1  # frames of the old generation are gone
        h.f[F.WIDTH], h.f[F.HEIGHT], h.f[F.GENERATION] = width, height, self._gen
        self._size = (width, height)
        if old is not None:
            old.close()
            unlink_segment(data_segment(self.name, self._gen - 1))
        log.info("ring %r: generation %d, %dx%d", self.name, self._gen, width, height)

    def write(self, frame: Frame) -> int:
        """Copy frame into the next slot and publish it; returns its sequence number."""
        image = frame.image
        height, width = image.shape[:2]
        if (width, height) != self._size:
            self._new_generation(width, height)
        seq = self._seq + 1
        slot = seq % self.slots
        meta = self._h.slots[slot]
        meta[S.SEQ] = -1
        self._pixels[slot] = image  # type: ignore[index]
        meta[S.GEN:S.H + 1] = (self._gen, frame.index, frame.t_mono_ns, frame.t_wall_ns, width, height)
        meta[S.SEQ] = seq
        f = self._h.f
        f[F.WRITE_SEQ], f[F.WRITTEN], f[F.HEARTBEAT_NS] = seq, seq + 1, time.monotonic_ns()
        self._seq = seq
        self._wake()
        return seq

    def wait_for_consumer(self, stop: Callable[[], bool], poll_s: float = 0.0005) -> bool:
        """Pacing for finite sources (the `every` frame policy): wait until writing the next
        frame would not overwrite one the consuming reader (`RingReader(..., consumer=True)`)
        has not taken yet. Before a consumer attaches, the ring fills up and waits for it, so
        it still gets every frame from the first. Returns False if `stop()` became true."""
        f = self._h.f
        while self._seq + 1 - int(f[F.CONSUMED_SEQ]) > self.slots:  # would overwrite a frame not yet taken
            if stop():
                return False
            time.sleep(poll_s)
        return True

    def _wake(self) -> None:
        self._count = (self._count + 1) & 0xFFFFFFFF
        self._h.notify[0] = self._count
        FUTEX.wake(self._h.notify_addr)

    def set_status(self, status: str, *, attempt: int = 0, message: str = "", fps: float | None = None) -> None:
        """Publish the capture status for readers (message must already be redacted)."""
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}; one of {STATUSES}")
        f = self._h.f
        f[F.STATUS_SEQ] += 1  # odd: being changed
        f[F.STATUS], f[F.ATTEMPT], f[F.STATUS_WALL_NS] = STATUSES.index(status), attempt, time.time_ns()
        if fps is not None:
            f[F.FPS_MILLI] = int(fps * 1000)
        self._h.set_text(MESSAGE_OFF, MESSAGE_BYTES, message)
        f[F.STATUS_SEQ] += 1
        self.heartbeat()
        self._wake()

    def mark_ended(self, message: str = "end of stream") -> None:
        """End of a finite source: readers get the remaining frames, then None and `ended`."""
        self._h.f[F.END_SEQ] = self._seq
        self.set_status("ended", message=message)

    def heartbeat(self) -> None:
        self._h.f[F.HEARTBEAT_NS] = time.monotonic_ns()

    @property
    def seq(self) -> int:
        """Sequence number of the newest frame written (-1 before the first)."""
        return self._seq

    def close(self, status: str | None = "stopped") -> None:
        """Tell readers the ring is closed (status, unless already ended/failed) and remove the
        segments; readers keep what they mapped. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        current = STATUSES[int(self._h.f[F.STATUS])]
        if status and current not in ("ended", "failed"):
            self.set_status(status, message="capture closed the ring")
        self._h.f[F.CLOSED] = 1
        self._wake()
        self._pixels = None
        if self._data is not None:
            self._data.close()
            unlink_segment(data_segment(self.name, self._gen))
        self._h.drop()
        unlink_segment(self._seg)  # only our own segments: a successor may already own the name

    def __enter__(self) -> RingWriter:
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

"""The reading half of the ring: RingReader, attached by name from any process."""
from __future__ import annotations

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
    SOURCE_ID_BYTES,
    SOURCE_ID_OFF,
    STATUSES,
    F,
    Header,
    RingError,
    RingFrame,
    S,
    SourceState,
    data_segment,
    header_segment,
    open_segment,
    process_alive,
)
from rtseg.sources.base import Frame

LIVENESS_CHECK_S = 0.25  # how often an idle reader checks that its writer is still there


class _NotReady(Exception):
    pass


class RingReader:
    """Reads ring `name`. `latest()` for the freshest frame, `next()` for every frame it can
    get; both return a RingFrame holding a private copy, or None on timeout or end of stream
    (`ended` tells which). A reader outlives its writer: when a new writer takes over the
    name (a restarted capture process) it follows it by itself."""

    def __init__(self, name: str, *, wait_s: float = 0.0, consumer: bool = False) -> None:
        self.name = name
        # the one reader a paced writer waits for: next() resumes after the last frame it took
        # (also across a restart of this reader's process) and reports each frame taken
        self.consumer = consumer
        self._seg = header_segment(name)
        self._h: Header | None = None
        self._data: SharedMemory | None = None
        self._pixels: np.ndarray | None = None
        self._pixels_gen = -1
        self._gen_offset = self._last_gen = 0
        self.dropped = 0  # frames this reader never got, over its life
        deadline = time.monotonic() + wait_s
        while True:
            try:
                self._attach()
                break
            except (FileNotFoundError, _NotReady):
                if time.monotonic() >= deadline:
                    raise RingError(
                        f"no ring {name!r} in shared memory ({SHM_DIR}/{self._seg}); start the capture "
                        f"process for this camera first, or give wait_s to wait for it"
                    ) from None
                time.sleep(0.02)
        self._next_check = time.monotonic() + LIVENESS_CHECK_S

    def _attach(self) -> None:
        try:
            shm = open_segment(self._seg)
        except ValueError:  # created but not sized yet
            raise _NotReady from None
        header = Header(shm)
        if int(header.f[F.MAGIC]) != MAGIC:
            header.drop()
            raise _NotReady
        header.map_slots()
        self._drop_pixels()
        if self._h is not None:
            self._h.drop()
        self._h = header
        self._uid = int(header.f[F.UID])
        self._slots = int(header.f[F.SLOTS])
        self._source_id = header.text(SOURCE_ID_OFF, SOURCE_ID_BYTES)
        self._last_seq = -1
        self._rebase_generation = True  # a new writer counts generations from its own start

    # -- pixels -------------------------------------------------------------------------

    def _drop_pixels(self) -> None:
        self._pixels = None
        if self._data is not None:
            self._data.close()
            self._data = None
        self._pixels_gen = -1

    def _pixels_for(self, gen: int, width: int, height: int) -> np.ndarray | None:
        if self._pixels_gen == gen and self._pixels is not None and self._pixels.shape[1:3] == (height, width):
            return self._pixels
        self._drop_pixels()
        try:
            data = open_segment(data_segment(self.name, gen))
        except (FileNotFoundError, ValueError):
            return None  # that generation is already gone
        if data.size < self._slots * height * width * 3:
            data.close()
            return None
        self._data, self._pixels_gen = data, gen
        self._pixels = np.ndarray((self._slots, height, width, 3), np.uint8, data.buf)
        np.frombuffer(data.buf, np.uint8)[::4096].sum()  # map every page now, not during the first copies
        return self._pixels

    def _copy(self, seq: int) -> RingFrame | None:
        """Frame `seq` if it is still in its slot, checked before and after the copy."""
        slot = seq % self._slots
        meta = self._h.slots[slot]  # type: ignore[union-attr]
        if int(meta[S.SEQ]) != seq:
            return None
        gen, index, t_mono, t_wall, width, height = (int(v) for v in meta[S.GEN : S.H + 1])
        pixels = self._pixels_for(gen, width, height)
        if pixels is None:
            return None
        image = pixels[slot].copy()
        if int(meta[S.SEQ]) != seq:  # the writer came round while we copied: torn, discard
            return None
        missed = seq - self._last_seq - 1 if self._last_seq >= 0 else 0
        self.dropped += missed
        self._last_seq = seq
        if self.consumer:
            f = self._h.f  # type: ignore[union-attr]
            f[F.CONSUMED_SEQ], f[F.CONSUMED_NS] = seq, time.monotonic_ns()
        if self._rebase_generation:  # keep generations increasing across writers, for this reader
            self._gen_offset = max(self._gen_offset, self._last_gen + 1 - gen) if self._last_gen else 0
            self._rebase_generation = False
        self._last_gen = gen + self._gen_offset
        frame = Frame(image, self._source_id, index, t_mono, t_wall, width, height)
        return RingFrame(frame=frame, seq=seq, missed=missed, generation=self._last_gen)

    def _give_up_on(self, newest: int) -> None:
        """Frames up to newest can no longer be read (ring closed, generation gone)."""
        if newest > self._last_seq:
            self.dropped += newest - self._last_seq - (1 if self._last_seq >= 0 else 0)
            self._last_seq = newest

    # -- reading ------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._h is None:
            raise RingError(f"reader of ring {self.name!r} is closed; open a new RingReader")

    def latest(self, timeout_s: float | None = 1.0) -> RingFrame | None:
        """The newest frame, if newer than the last one this reader returned; waits up to
        timeout_s (None: forever) for one. `missed` counts the frames skipped in between."""
        return self._read(lambda newest: newest, timeout_s)

    def next(self, timeout_s: float | None = 1.0) -> RingFrame | None:
        """The frame after the last one this reader returned (the newest on the first call;
        for a consumer, the one after the last frame any consumer took); if the writer already
        overwrote it, the oldest one still there, with `missed` saying how many were skipped.
        Waits up to timeout_s (None: forever)."""
        return self._read(self._first_wanted, timeout_s)

    def _first_wanted(self, newest: int) -> int:
        after = self._last_seq
        if after < 0:
            if not self.consumer:
                return newest
            after = int(self._h.f[F.CONSUMED_SEQ])  # type: ignore[union-attr]
        return max(after + 1, newest - self._slots + 1)

    def _read(self, first: Callable[[int], int], timeout_s: float | None) -> RingFrame | None:
        """The first frame still in the ring from seq first(newest) on, once there is one newer
        than the last returned; waits up to timeout_s (None: forever)."""
        self._check_open()
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            token = int(self._h.notify[0])  # type: ignore[union-attr]
            newest = int(self._h.f[F.WRITE_SEQ])  # type: ignore[union-attr]
            if newest > self._last_seq:
                for seq in range(first(newest), newest + 1):
                    got = self._copy(seq)
                    if got is not None:
                        return got
                if int(self._h.f[F.WRITE_SEQ]) == newest:  # type: ignore[union-attr]
                    self._give_up_on(newest)
                continue
            if not self._wait(token, deadline):
                return None

    def _wait(self, token: int, deadline: float | None) -> bool:
        """Sleep until the writer publishes something (or a short while); False: stop now."""
        now = time.monotonic()
        if now >= self._next_check:
            self._next_check = now + LIVENESS_CHECK_S
            if self._follow_new_writer():
                return True
        if self.ended:
            return False
        remaining = LIVENESS_CHECK_S if deadline is None else min(deadline - now, LIVENESS_CHECK_S)
        if remaining <= 0:
            return False
        FUTEX.wait(self._h.notify_addr, token, remaining)  # type: ignore[union-attr]
        return True

    def _writer_alive(self) -> bool:
        f = self._h.f  # type: ignore[union-attr]
        return not f[F.CLOSED] and process_alive(int(f[F.PID]), int(f[F.PID_START_MS]))

    def _follow_new_writer(self) -> bool:
        """If our writer is gone and a new one owns the name, switch to it. True if switched."""
        if self._writer_alive():
            return False
        try:
            probe = Header(open_segment(self._seg))
        except (FileNotFoundError, ValueError, RingError):
            return False
        fresh = int(probe.f[F.MAGIC]) == MAGIC and int(probe.f[F.UID]) != self._uid
        probe.drop()
        if not fresh:
            return False
        try:
            self._attach()
        except (FileNotFoundError, ValueError, _NotReady, RingError):
            return False
        return True

    @property
    def ended(self) -> bool:
        """True when the source ended (end of file) and this reader has had its last frame."""
        f = self._h.f  # type: ignore[union-attr]
        return STATUSES[int(f[F.STATUS])] == "ended" and self._last_seq >= int(f[F.END_SEQ])

    def source_state(self) -> SourceState:
        """The capture status as the writer published it; "lost" if the writer process is gone
        without closing the ring (killed, crashed)."""
        self._check_open()
        self._follow_new_writer()
        h = self._h
        f = h.f  # type: ignore[union-attr]
        for _ in range(1000):
            before = int(f[F.STATUS_SEQ])
            code, attempt, since = int(f[F.STATUS]), int(f[F.ATTEMPT]), int(f[F.STATUS_WALL_NS])
            message = h.text(MESSAGE_OFF, MESSAGE_BYTES)  # type: ignore[union-attr]
            if before % 2 == 0 and int(f[F.STATUS_SEQ]) == before:
                break
            time.sleep(0.0001)
        status, pid = STATUSES[code], int(f[F.PID])
        alive = self._writer_alive()
        if not alive and status in ("starting", "connected", "lost", "reconnecting"):
            status, attempt, since = "lost", 0, int(f[F.STATUS_WALL_NS])
            message = (f"capture process (pid {pid}) is gone without closing the ring (killed or crashed); "
                       "the supervisor restarts it, or start the capture again")
        return SourceState(
            status=status,
            attempt=attempt,
            message=message,
            writer_alive=alive,
            writer_pid=pid,
            since_wall_ns=since,
            heartbeat_age_s=(time.monotonic_ns() - int(f[F.HEARTBEAT_NS])) / 1e9,
            frames_written=int(f[F.WRITTEN]),
            last_seq=int(f[F.WRITE_SEQ]),
            width=int(f[F.WIDTH]),
            height=int(f[F.HEIGHT]),
            fps=int(f[F.FPS_MILLI]) / 1000,
            generation=int(f[F.GENERATION]),
        )

    @property
    def source_id(self) -> str:
        return self._source_id

    def close(self) -> None:
        self._drop_pixels()
        if self._h is not None:
            self._h.drop()
            self._h = None

    def __enter__(self) -> RingReader:
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

"""Layout of a ring in shared memory, and the helpers both halves share (segments, futex,
writer liveness, cleanup)."""
from __future__ import annotations

import ctypes
import logging
import platform
import re
import sys
import time
from dataclasses import dataclass
from multiprocessing import resource_tracker
from multiprocessing.shared_memory import SharedMemory
from pathlib import Path

import numpy as np
import psutil

from rtseg.sources.base import Frame

log = logging.getLogger(__name__)

MAGIC, VERSION = 0x52_54_53_45_47_52_4E_47, 1  # b"RTSEGRNG"
STATUSES = ("starting", "connected", "lost", "reconnecting", "ended", "stopped", "failed")
SHM_DIR = Path("/dev/shm")
PREFIX = "rtseg."
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,200}$")

# header: 32 int64 fields (F), a futex word, the source id, the status message, then per slot
# 8 int64 fields (S)


class F:
    """Indices of the header's int64 fields."""

    (MAGIC, VERSION, SLOTS, UID, PID, PID_START_MS, GENERATION, WIDTH, HEIGHT, WRITE_SEQ, WRITTEN,
     HEARTBEAT_NS, STATUS_SEQ, STATUS, ATTEMPT, STATUS_WALL_NS, END_SEQ, CLOSED, FPS_MILLI,
     CONSUMED_SEQ, CONSUMED_NS) = range(21)  # CONSUMED_*: the pacing consumer's progress


class S:
    """Indices of a slot's int64 fields (seq is -1 while the slot is being written)."""

    SEQ, GEN, INDEX, MONO, WALL, W, H = range(7)


N_FIELDS, NOTIFY_OFF, SOURCE_ID_OFF, MESSAGE_OFF, SLOTS_OFF = 32, 256, 320, 384, 896
SOURCE_ID_BYTES, MESSAGE_BYTES = 64, 512
SLOT_FIELDS = 8


class RingError(RuntimeError):
    """A ring that cannot be created or attached; the message says what to do."""


@dataclass(frozen=True)
class RingFrame:
    frame: Frame  # a private copy, safe to keep
    seq: int  # 0, 1, 2, ... per writer
    missed: int  # frames skipped since the one this reader returned before
    generation: int  # increases with each resolution change and each new writer this reader follows


@dataclass(frozen=True)
class SourceState:
    status: str  # one of STATUSES; "lost" also when the writer process is gone
    attempt: int  # reconnect attempt, for "reconnecting"
    message: str  # why (credentials redacted by the capture process)
    writer_alive: bool
    writer_pid: int
    since_wall_ns: int  # when the status last changed
    heartbeat_age_s: float  # seconds since the writer last wrote a frame or a heartbeat
    frames_written: int
    last_seq: int  # newest frame's sequence number, -1 before the first
    width: int
    height: int
    fps: float
    generation: int  # the writer's own count (RingFrame.generation may be offset, see there)


def header_segment(name: str) -> str:
    if not _NAME.match(name):
        raise RingError(f"ring name {name!r} is not valid: use 1-200 letters, digits, '_' or '-'")
    return PREFIX + name


def data_segment(name: str, generation: int) -> str:
    return f"{PREFIX}{name}.g{generation}"


def open_segment(seg: str, size: int = 0) -> SharedMemory:
    """Create (size > 0) or attach a segment without Python's resource tracker, which would
    unlink it (and warn) when the process that attached it exits."""
    if sys.version_info >= (3, 13):
        return SharedMemory(seg, create=size > 0, size=size, track=False)  # type: ignore[call-arg]
    shm = SharedMemory(seg, create=size > 0, size=size)
    resource_tracker.unregister(shm._name, "shared_memory")  # type: ignore[attr-defined]
    return shm


def unlink_segment(seg: str) -> None:
    import _posixshmem  # what SharedMemory.unlink() uses, minus its resource-tracker call

    try:
        _posixshmem.shm_unlink("/" + seg)
    except FileNotFoundError:
        pass


def process_start_ms(pid: int) -> int:
    try:
        return int(psutil.Process(pid).create_time() * 1000)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return 0


def process_alive(pid: int, start_ms: int) -> bool:
    """True if process pid is running (not a zombie) and is the one that started at start_ms."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return start_ms == 0 or abs(int(proc.create_time() * 1000) - start_ms) <= 20
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


class Futex:
    """Cross-process wait/wake on a 32-bit word in shared memory (Linux futex)."""

    NR = {"x86_64": 202, "amd64": 202, "aarch64": 98, "arm64": 98}.get(platform.machine().lower())

    def __init__(self) -> None:
        self.ok = sys.platform.startswith("linux") and self.NR is not None
        if self.ok:
            self._syscall = ctypes.CDLL(None, use_errno=True).syscall

    def wait(self, addr: int, expected: int, timeout_s: float) -> None:
        if not self.ok:
            time.sleep(min(timeout_s, 0.0005))
            return
        ts = (ctypes.c_long * 2)(int(timeout_s), int((timeout_s % 1) * 1e9))
        self._syscall(self.NR, ctypes.c_void_p(addr), 0, ctypes.c_uint(expected), ts, None, 0)

    def wake(self, addr: int) -> None:
        if self.ok:
            self._syscall(self.NR, ctypes.c_void_p(addr), 1, 0x7FFFFFFF, None, None, 0)


FUTEX = Futex()


class Header:
    """numpy views on a header segment; drop() before closing the segment."""

    def __init__(self, shm: SharedMemory) -> None:
        self.shm = shm
        if shm.size < SLOTS_OFF:
            raise RingError(f"segment {shm.name} is too small to be an rtseg ring header")
        self.f = np.ndarray((N_FIELDS,), np.int64, shm.buf, 0)
        self.notify = np.ndarray((1,), np.uint32, shm.buf, NOTIFY_OFF)
        self.notify_addr = self.notify.ctypes.data

    def map_slots(self) -> None:
        n = int(self.f[F.SLOTS])
        if self.shm.size < SLOTS_OFF + n * SLOT_FIELDS * 8:
            raise RingError(f"segment {self.shm.name} is shorter than its {n} slots need")
        self.slots = np.ndarray((n, SLOT_FIELDS), np.int64, self.shm.buf, SLOTS_OFF)

    def text(self, off: int, size: int) -> str:
        raw = bytes(self.shm.buf[off : off + size])
        return raw.split(b"\0", 1)[0].decode("utf-8", "replace")

    def set_text(self, off: int, size: int, text: str) -> None:
        raw = text.encode("utf-8")[: size - 1]
        self.shm.buf[off : off + size] = raw + b"\0" * (size - len(raw))

    def drop(self) -> None:
        self.f = self.notify = self.slots = None  # type: ignore[assignment]
        self.shm.close()


def ring_segments(name: str | None = None) -> list[str]:
    """The rtseg segments in /dev/shm (of ring `name`, or all), header first."""
    if not SHM_DIR.is_dir():
        return []
    pattern = re.compile(rf"^{re.escape(PREFIX)}(?P<name>[A-Za-z0-9_-]+)(\.g\d+)?$")
    found = [p.name for p in SHM_DIR.iterdir() if (m := pattern.match(p.name)) and (name is None or m["name"] == name)]
    return sorted(found, key=lambda s: (s.count("."), s))


def unlink_ring(name: str) -> None:
    """Remove every segment of ring `name` (header and pixels), whoever made them."""
    segs = ring_segments(name) or [header_segment(name)]
    for seg in segs:
        unlink_segment(seg)


def remove_if_stale(name: str, min_age_s: float = 5.0) -> bool:
    """Remove ring `name` if its writer is dead or closed it (a header still being set up,
    younger than min_age_s, is left alone); pixel segments without a header go too.
    Returns True if something was removed. A live writer's ring is never touched."""
    seg = header_segment(name)
    try:
        h = Header(open_segment(seg))
    except FileNotFoundError:
        if not ring_segments(name):
            return False
        unlink_ring(name)  # pixels whose header is gone
        return True
    except (ValueError, RingError):
        h = None
    ready = alive = False
    if h is not None:
        f = h.f
        ready = int(f[F.MAGIC]) == MAGIC
        alive = ready and not f[F.CLOSED] and process_alive(int(f[F.PID]), int(f[F.PID_START_MS]))
        h.drop()
    if alive:
        return False
    if not ready:
        try:
            if time.time() - (SHM_DIR / seg).stat().st_mtime < min_age_s:
                return False
        except FileNotFoundError:
            return False
    unlink_ring(name)
    return True


def cleanup_stale(min_age_s: float = 5.0) -> list[str]:
    """Remove every ring whose writer is dead or closed (for a supervisor, at start and
    after a child crashed). Returns the ring names removed."""
    names = sorted({s.split(".")[1] for s in ring_segments()})
    removed = [name for name in names if remove_if_stale(name, min_age_s)]
    if removed:
        log.info("removed stale rings: %s", ", ".join(removed))
    return removed

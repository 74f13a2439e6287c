"""A shared-memory ring of frames: one writer (the capture process), any number of readers.

Guarantees:
- The writer never blocks: it overwrites the oldest slot; a slow reader misses frames and
  is told how many (`RingFrame.missed`, `RingReader.dropped`).
- No torn frames: every slot has a sequence number that the writer invalidates before it
  writes and publishes after; a reader copies the pixels and keeps them only if the slot's
  number did not change meanwhile.
- A change of resolution starts a new generation (a new pixel segment); readers follow it
  by themselves, `RingFrame.generation` tells them.
- The capture status (connected / lost / reconnecting n / ended / ...) lives in the header,
  with the writer's pid: `RingReader.source_state()` reads a writer killed by `kill -9` as
  "lost". A reader follows a new writer that takes over the same name.
- Segments live in /dev/shm as `rtseg.NAME` (header) and `rtseg.NAME.gN` (pixels). The
  writer removes them when it closes; after a crash the next writer of the same name, or
  `unlink_ring(name)` / `cleanup_stale()`, reclaims them. Python's resource tracker is kept
  out of it, so a reader process that exits never removes or warns about the writer's
  segments.

Waiting readers sleep on a futex in the header (Linux), woken by each write; elsewhere
they poll every 0.5 ms.
"""
from rtseg.ring.layout import (
    STATUSES,
    RingError,
    RingFrame,
    SourceState,
    cleanup_stale,
    remove_if_stale,
    ring_segments,
    unlink_ring,
)
from rtseg.ring.reader import RingReader
from rtseg.ring.writer import RingWriter

__all__ = [
    "RingWriter", "RingReader", "RingFrame", "SourceState", "RingError", "STATUSES",
    "unlink_ring", "remove_if_stale", "cleanup_stale", "ring_segments",
]

"""The shared-memory ring: semantics in one process, then real reader and writer processes."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtseg.ring import RingError, RingReader, RingWriter, cleanup_stale, ring_segments, unlink_ring
from rtseg.sources import Frame

ROOT = Path(__file__).resolve().parents[2]


def frame(i: int, w: int = 32, h: int = 24) -> Frame:
    return Frame.now(np.full((h, w, 3), i % 256, np.uint8), "cam", i)


def test_latest_and_next_semantics(ring: str) -> None:
    with RingWriter(ring, slots=4, source_id="cam7") as writer, RingReader(ring) as reader:
        assert reader.latest(0) is None and reader.next(0) is None
        for i in range(3):
            writer.write(frame(i))
        got = reader.next(0)
        assert (got.seq, got.missed, got.frame.index, got.frame.source_id) == (2, 0, 2, "cam7")  # first: newest
        for i in range(3, 13):
            writer.write(frame(i))
        got = reader.next(0)  # 3..8 were overwritten (4 slots): oldest still there is 9
        assert (got.seq, got.missed) == (9, 6)
        assert [reader.next(0).seq for _ in range(3)] == [10, 11, 12]
        writer.write(frame(13))
        writer.write(frame(14))
        got = reader.latest(0)
        assert (got.seq, got.missed, reader.dropped) == (14, 1, 7)
        assert reader.latest(0) is None, "latest() returns only frames newer than the last one"
        kept = got.frame.image
        for i in range(15, 30):
            writer.write(frame(i))
        assert (kept == 14).all(), "a returned frame is a private copy"
        assert got.frame.t_mono_ns <= time.monotonic_ns() and got.generation == 1


@settings(max_examples=40, deadline=None)
@given(slots=st.integers(2, 6), bursts=st.lists(st.integers(0, 9), min_size=1, max_size=12),
       use_latest=st.lists(st.booleans(), min_size=12, max_size=12))
def test_reads_never_go_back_and_count_every_skipped_frame(slots: int, bursts: list[int],
                                                          use_latest: list[bool]) -> None:
    ring = f"h-{uuid.uuid4().hex[:10]}"
    written = dropped = 0
    with RingWriter(ring, slots=slots) as writer, RingReader(ring) as reader:
        last = -1
        for burst, latest in zip(bursts, use_latest, strict=False):
            for _ in range(burst):
                writer.write(frame(written))
                written += 1
            got = reader.latest(0) if latest else reader.next(0)
            if written - 1 <= last:
                assert got is None
                continue
            assert got is not None and got.seq > last and got.seq >= written - slots
            assert got.seq == written - 1 if latest or last < 0 else got.seq == max(last + 1, written - slots)
            assert got.missed == (got.seq - last - 1 if last >= 0 else 0)
            assert int(got.frame.image[0, 0, 0]) == got.seq % 256
            last, dropped = got.seq, dropped + got.missed
        assert reader.dropped == dropped
    assert ring_segments(ring) == []


def test_resolution_change_starts_a_generation_readers_follow(ring: str) -> None:
    with RingWriter(ring, slots=3) as writer, RingReader(ring) as reader:
        writer.write(frame(0, 32, 24))
        assert reader.next(0).frame.image.shape == (24, 32, 3)
        writer.write(frame(1, 32, 24))
        writer.write(frame(2, 64, 48))
        got = reader.next(0)
        assert (got.seq, got.generation, got.frame.width, got.frame.height, got.missed) == (2, 2, 64, 48, 1)
        assert reader.source_state().generation == 2 and reader.source_state().width == 64
        assert len(ring_segments(ring)) == 2, "the old generation's pixels are removed"


def test_end_of_stream_is_seen_after_the_last_frame(ring: str) -> None:
    with RingWriter(ring) as writer, RingReader(ring) as reader:
        for i in range(3):
            writer.write(frame(i))
        reader.next(0)
        writer.write(frame(3))
        writer.mark_ended()
        assert not reader.ended
        assert reader.next(5).seq == 3
        t0 = time.monotonic()
        assert reader.next(5) is None and reader.latest(5) is None
        assert time.monotonic() - t0 < 0.5, "at the end, reads return at once"
        assert reader.ended and reader.source_state().status == "ended"


def test_waiting_reader_wakes_when_a_frame_arrives(ring: str) -> None:
    with RingWriter(ring) as writer, RingReader(ring) as reader:
        t0 = time.monotonic()
        assert reader.latest(0.3) is None
        assert 0.28 <= time.monotonic() - t0 < 1.0
        timer = threading.Timer(0.2, lambda: writer.write(frame(1)))
        timer.start()
        got = reader.next(5)
        assert got is not None and (time.monotonic_ns() - got.frame.t_mono_ns) / 1e6 < 50
        timer.join()


def test_status_round_trip_and_one_writer_per_name(ring: str) -> None:
    writer = RingWriter(ring)
    with RingReader(ring) as reader:
        assert reader.source_state().status == "starting"
        writer.set_status("reconnecting", attempt=3, message="no answer from 10.0.0.9:554", fps=12.5)
        state = reader.source_state()
        assert (state.status, state.attempt, state.message, state.fps) == (
            "reconnecting", 3, "no answer from 10.0.0.9:554", 12.5)
        assert state.writer_alive and state.writer_pid == os.getpid() and state.heartbeat_age_s < 5
        with pytest.raises(ValueError, match="unknown status 'sleeping'"):
            writer.set_status("sleeping")
        with pytest.raises(RingError, match=rf"ring '{ring}' already has a live writer \(pid {os.getpid()}\)"):
            RingWriter(ring)
        writer.close()
        assert reader.source_state().status == "stopped" and not reader.source_state().writer_alive
    with pytest.raises(RingError, match=f"reader of ring '{ring}' is closed"):
        reader.latest(0)


def test_missing_ring_is_explained_and_wait_s_waits_for_it(ring: str) -> None:
    with pytest.raises(RingError, match=rf"no ring '{ring}' in shared memory .*start the capture process"):
        RingReader(ring)
    with pytest.raises(RingError, match="ring name 'bad name!' is not valid"):
        RingReader("bad name!")
    box: list[RingWriter] = []
    timer = threading.Timer(0.3, lambda: box.append(RingWriter(ring)))
    timer.start()
    with RingReader(ring, wait_s=5) as reader:
        assert reader.source_state().status == "starting"
    timer.join()
    box[0].close()


# -- real processes -------------------------------------------------------------------------

_WRITER = """
import sys, time, numpy as np
from rtseg.ring import RingWriter
from rtseg.sources import Frame
name, w, h = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
writer = RingWriter(name, slots=2)
writer.set_status("connected")
writer.write(Frame.now(np.full((h, w, 3), 0, np.uint8), "proc", 0))  # pixel segment exists from here
print("READY", flush=True)
i = 1
while True:
    writer.write(Frame.now(np.full((h, w, 3), i % 251, np.uint8), "proc", i))
    i += 1
"""

_READER = """
import sys, time
from rtseg.ring import RingReader
reader = RingReader(sys.argv[1], wait_s=10)
got = [reader.next(5) for _ in range(int(sys.argv[2]))]
assert all(g is not None for g in got)
print(sum(g.frame.index for g in got))
"""


def _python(code: str, *args: object, **kw: object) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-W", "error", "-c", code, *map(str, args)], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)  # type: ignore[call-overload]


def test_no_torn_frames_under_a_flooding_writer_process(ring: str) -> None:
    """2 slots and a writer in another process writing as fast as it can: every copy the
    reader keeps must be one whole frame (all pixels equal index % 251)."""
    writer = _python(_WRITER, ring, 640, 480)
    try:
        assert writer.stdout.readline().strip() == "READY"
        with RingReader(ring) as reader:
            checked = 0
            t0 = time.monotonic()
            while checked < 300 and time.monotonic() - t0 < 20:
                got = reader.next(2)
                img = got.frame.image
                assert img.min() == img.max() == got.frame.index % 251, f"torn frame at seq {got.seq}"
                checked += 1
            assert checked == 300 and reader.dropped > 0, "the writer should have lapped the reader"
    finally:
        writer.kill()
        writer.communicate()
    unlink_ring(ring)


def test_reader_processes_leave_the_writers_segments_alone(ring: str) -> None:
    with RingWriter(ring, slots=8) as writer:
        readers = [_python(_READER, ring, 5) for _ in range(2)]
        for i in range(200):
            writer.write(frame(i))
            time.sleep(0.005)
            if all(r.poll() is not None for r in readers):
                break
        outs = [r.communicate(timeout=30) for r in readers]
        assert [r.returncode for r in readers] == [0, 0], outs
        assert all(err == "" for _, err in outs), f"reader processes warned: {outs}"
        time.sleep(0.3)  # what a resource tracker would do after its processes exit
        assert len(ring_segments(ring)) == 2, "a reader process removed the writer's segments"
        writer.write(frame(999))
    assert ring_segments(ring) == []


def test_killed_writer_reads_as_lost_and_is_reclaimed(ring: str) -> None:
    writer = _python(_WRITER, ring, 64, 48)
    assert writer.stdout.readline().strip() == "READY"
    reader = RingReader(ring)
    assert reader.next(2) is not None and reader.source_state().status == "connected"
    os.kill(writer.pid, signal.SIGKILL)
    time.sleep(0.2)  # not reaped yet: a zombie must read as gone too
    state = reader.source_state()
    assert (state.status, state.writer_alive) == ("lost", False)
    assert f"capture process (pid {writer.pid}) is gone" in state.message
    t0 = time.monotonic()
    assert reader.latest(0.6) is None and time.monotonic() - t0 < 2
    writer.communicate()
    assert len(ring_segments(ring)) == 2
    # a new writer of the same ring takes over; the old reader follows it by itself
    with RingWriter(ring) as successor:
        successor.write(frame(5))
        got = reader.latest(3)
        assert got is not None and got.frame.index == 5 and got.seq == 0 and got.generation == 2
        assert reader.source_state().status == "starting" and reader.source_state().writer_alive
    reader.close()


def test_cleanup_stale_removes_only_dead_writers_rings(ring: str) -> None:
    other = f"{ring}-live"
    writer = _python(_WRITER, ring, 64, 48)
    assert writer.stdout.readline().strip() == "READY"
    with RingWriter(other) as live:
        live.write(frame(0))
        writer.send_signal(signal.SIGKILL)
        writer.communicate()
        assert len(ring_segments(ring)) == 2
        removed = cleanup_stale()
        assert ring in removed and other not in removed
        assert ring_segments(ring) == [] and len(ring_segments(other)) == 2


def test_generations_keep_increasing_for_a_reader_across_writers(ring: str) -> None:
    first = RingWriter(ring)
    reader = RingReader(ring)
    first.write(frame(0))
    assert reader.latest(1).generation == 1
    first.close()  # a clean stop removes the segments; the next writer counts from 1 again
    with RingWriter(ring) as second:
        second.write(frame(0, 64, 48))
        got = reader.latest(3)
        assert got is not None and got.frame.width == 64
        assert got.generation == 2, "a reader that follows a new writer must see a new generation"
    reader.close()


def test_half_created_header_is_left_to_its_creator_then_reclaimed(ring: str) -> None:
    from rtseg.ring.layout import header_segment, open_segment

    shm = open_segment(header_segment(ring), 4096)  # a header whose writer has not finished it
    shm.close()
    with pytest.raises(RingError, match="being created by another process right now"):
        RingWriter(ring)
    assert cleanup_stale(min_age_s=60) == [] and len(ring_segments(ring)) == 1
    assert ring in cleanup_stale(min_age_s=0)


def test_bench_ring_tool_runs() -> None:
    before = set(ring_segments())
    out = subprocess.run([sys.executable, "-W", "error", "tools/bench_ring.py", "--sizes", "64x48", "--readers", "2",
                          "--seconds", "0.3"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    row = out.stdout.strip().splitlines()[-1].split()
    assert row[0] == "64x48" and row[1] == "2" and out.stderr == ""
    assert not [s for s in set(ring_segments()) - before if s.startswith("rtseg.bench-")], "bench leaked its ring"

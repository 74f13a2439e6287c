"""Pacing for the `every` frame policy: a paced writer never overwrites a frame the consuming
reader has not taken, before it attaches, while it reads, and across its restart."""
from __future__ import annotations

import threading
import time

import numpy as np

from rtseg.ring import RingReader, RingWriter
from rtseg.sources import Frame


def frame(i: int) -> Frame:
    return Frame.now(np.full((6, 8, 3), i % 256, np.uint8), "paced", i)


def test_consumer_gets_every_frame_from_the_first(tmp_path):
    name = f"paced-{time.monotonic_ns()}"
    with RingWriter(name, slots=4) as writer:
        stop = threading.Event()
        written = []

        def produce():
            for i in range(30):
                if not writer.wait_for_consumer(stop.is_set):
                    return
                writer.write(frame(i))
                written.append(i)

        t = threading.Thread(target=produce)
        t.start()
        got = []
        try:
            time.sleep(0.3)
            assert written == [0, 1, 2, 3], "with no consumer yet, the writer fills the ring and waits"
            with RingReader(name, consumer=True) as consumer:
                for _ in range(15):
                    rf = consumer.next(timeout_s=5)
                    assert rf.missed == 0
                    got.append(rf.frame.index)
                    time.sleep(0.002)
            # a new consumer (a restarted segmenter) resumes after the last frame taken
            with RingReader(name, consumer=True) as again:
                for _ in range(15):
                    got.append(again.next(timeout_s=5).frame.index)
        finally:
            stop.set()
            t.join(5)
        assert got == list(range(30))


def test_a_plain_reader_does_not_count_as_consumer(tmp_path):
    name = f"unpaced-{time.monotonic_ns()}"
    with RingWriter(name, slots=4) as writer, RingReader(name) as viewer:
        for i in range(4):
            assert writer.wait_for_consumer(lambda: True)  # room for the first 4 frames
            writer.write(frame(i))
        assert not writer.wait_for_consumer(lambda: True)  # a plain reader took nothing: full
        assert viewer.latest(timeout_s=1).frame.index == 3
        assert writer.wait_for_consumer(lambda: True) is False

"""Publish a recording again
on the protocol, so `rtseg view` and any subscriber can watch it as if it were live.

Emits: every recorded masks.<camera>, frame.<camera>, prompt.<camera> and status message, at
the pace they reached the recorder (divided by --speed). Each message is the recorded one
with a fresh `seq`/`published_ns` (the publisher stamps them) and its monotonic times
(`capture_ns`, `processed_ns`) moved to this host's clock by the same amount, so latencies
look as recorded; wall-clock times (`capture_wall_ns`) are the original ones.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Callable, Iterable

from rtseg.protocol import FrameMessage, MasksMessage, Message, ObjectEvent, ProtocolError

log = logging.getLogger("rtseg.replay")

def retimed(msg: Message, now_ns: int) -> Message:
    """`msg` with its monotonic times moved so that (published - capture) stays as recorded."""
    if isinstance(msg, MasksMessage | FrameMessage | ObjectEvent) and msg.published_ns:
        shift = now_ns - msg.published_ns
        changes = {"capture_ns": msg.capture_ns + shift}
        if isinstance(msg, MasksMessage):
            changes["processed_ns"] = msg.processed_ns + shift
        return dataclasses.replace(msg, **changes)
    return msg


def replay(recording: Path, publisher, *, speed: float = 1.0, loop: bool = False,
           should_stop: Callable[[], bool] = lambda: False, cameras: Iterable[str] | None = None) -> int:
    """Publish the recording through `publisher` (a rtseg.pipeline.publisher.Publisher); returns how
    many messages were published."""
    from rtseg.recording.store import RecordingReader

    if speed <= 0:
        raise ValueError(f"--speed must be > 0, got {speed}")
    published = 0
    while not should_stop():
        reader = RecordingReader(Path(recording))
        start_mono = time.monotonic_ns()
        first_log = None
        passed = 0
        for rec in reader.records(cameras=cameras):
            first_log = rec.log_time_ns if first_log is None else first_log
            due = start_mono + (rec.log_time_ns - first_log) / speed
            while (wait := due - time.monotonic_ns()) > 0:
                if should_stop():
                    return published
                time.sleep(min(wait / 1e9, 0.1))
            if should_stop():
                return published
            try:
                msg = rec.message()
            except ProtocolError as e:
                log.warning("skipping a recorded %s message that does not decode: %s", rec.topic, e)
                continue
            publisher.publish(retimed(msg, time.monotonic_ns()))
            published += 1
            passed += 1
        if passed == 0:
            log.warning("recording %s holds no messages%s", recording, f" of {sorted(cameras)}" if cameras else "")
            return published
        if not loop:
            break
    return published

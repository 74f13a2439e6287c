"""`rtseg replay RECORDING [--pub ENDPOINT] [--speed 1.0] [--loop]`: publish a recording again
on the protocol, so `rtseg view` and any subscriber can watch it as if it were live.

Emits: every recorded masks.<camera>, frame.<camera>, prompt.<camera> and status message, at
the pace they reached the recorder (divided by --speed). Each message is the recorded one
with a fresh `seq`/`published_ns` (the publisher stamps them) and its monotonic times
(`capture_ns`, `processed_ns`) moved to this host's clock by the same amount, so latencies
look as recorded; wall-clock times (`capture_wall_ns`) are the original ones.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterable

from rtseg.protocol import FrameMessage, MasksMessage, Message, ProtocolError

log = logging.getLogger("rtseg.replay")

DESCRIPTION = """\
Publish a recording again on the protocol (for rtseg view, rtseg record, your programs).

examples:
  rtseg replay recordings                            # on tcp://127.0.0.1:5555, real time
  rtseg replay recordings --pub tcp://127.0.0.1:6555 --speed 4 --loop
  (then point rtseg view, or any subscriber, at that endpoint)

ZeroMQ drops what is published before a subscriber connects: --wait gives them time.
"""


def retimed(msg: Message, now_ns: int) -> Message:
    """`msg` with its monotonic times moved so that (published - capture) stays as recorded."""
    if isinstance(msg, MasksMessage | FrameMessage) and msg.published_ns:
        shift = now_ns - msg.published_ns
        changes = {"capture_ns": msg.capture_ns + shift}
        if isinstance(msg, MasksMessage):
            changes["processed_ns"] = msg.processed_ns + shift
        return dataclasses.replace(msg, **changes)
    return msg


def replay(recording: Path, publisher, *, speed: float = 1.0, loop: bool = False,
           should_stop: Callable[[], bool] = lambda: False, cameras: Iterable[str] | None = None) -> int:
    """Publish the recording through `publisher` (a rtseg.publisher.Publisher); returns how
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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = DESCRIPTION
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("recording", type=Path, help="recording folder or a .mcap / .mcap.part segment")
    parser.add_argument("--pub", default="tcp://127.0.0.1:5555",
                        help="endpoint to publish on (default %(default)s, the segmenter's default: stop it first)")
    parser.add_argument("--speed", type=float, default=1.0, help="pace factor: 2 = twice as fast (default 1)")
    parser.add_argument("--loop", action="store_true", help="start over at the end, until Ctrl-C")
    parser.add_argument("--camera", action="append", dest="cameras", help="replay only this camera (repeatable)")
    parser.add_argument("--wait", type=float, default=1.0,
                        help="seconds to wait after binding, for subscribers to connect (default 1)")
    parser.add_argument("--hwm", type=int, default=1000, help="per-subscriber queue, in messages (default 1000)")


def main(args: argparse.Namespace) -> int:
    from rtseg.publisher import Publisher
    from rtseg.recording.segment import RecordingError
    from rtseg.recording.store import list_segments

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    if args.speed <= 0:
        print(f"error: --speed must be > 0, got {args.speed}", file=sys.stderr)
        return 2
    try:
        segments = list_segments(args.recording)
    except RecordingError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        publisher = Publisher(args.pub, hwm=args.hwm)
    except OSError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    with publisher:
        log.info("replaying %s (%d segment(s)) on %s at %gx%s", args.recording, len(segments), publisher.endpoint,
                 args.speed, ", looping" if args.loop else "")
        stop.wait(args.wait)
        try:
            n = replay(args.recording, publisher, speed=args.speed, loop=args.loop, should_stop=stop.is_set,
                       cameras=args.cameras)
        except RecordingError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        stop.wait(0.5)  # let the last messages leave: closing drops what is still queued
    print(f"replayed {n} message(s) from {args.recording}")
    return 0

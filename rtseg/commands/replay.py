"""`rtseg replay RECORDING [--pub ENDPOINT] [--speed 1.0] [--loop]`: publish a recording again
(rtseg.recording.replay), so `rtseg view` and any subscriber can watch it as if it were live."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from rtseg.commands import setup_logging
from rtseg.proc import stop_on_signals
from rtseg.protocol import DEFAULT_PUB
from rtseg.recording.replay import replay

log = logging.getLogger("rtseg.replay")

DESCRIPTION = """\
Publish a recording again on the protocol (for rtseg view, rtseg record, your programs).

examples:
  rtseg replay recordings                            # on tcp://127.0.0.1:5555, real time
  rtseg replay recordings --pub tcp://127.0.0.1:6555 --speed 4 --loop
  (then point rtseg view, or any subscriber, at that endpoint)

ZeroMQ drops what is published before a subscriber connects: --wait gives them time.
"""



def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = DESCRIPTION
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("recording", type=Path, help="recording folder or a .mcap / .mcap.part segment")
    parser.add_argument("--pub", default=DEFAULT_PUB,
                        help="endpoint to publish on (default %(default)s, the segmenter's default: stop it first)")
    parser.add_argument("--speed", type=float, default=1.0, help="pace factor: 2 = twice as fast (default 1)")
    parser.add_argument("--loop", action="store_true", help="start over at the end, until Ctrl-C")
    parser.add_argument("--camera", action="append", dest="cameras", help="replay only this camera (repeatable)")
    parser.add_argument("--wait", type=float, default=1.0,
                        help="seconds to wait after binding, for subscribers to connect (default 1)")
    parser.add_argument("--hwm", type=int, default=1000, help="per-subscriber queue, in messages (default 1000)")


def main(args: argparse.Namespace) -> int:
    from rtseg.pipeline.publisher import Publisher
    from rtseg.recording.segment import RecordingError
    from rtseg.recording.store import list_segments

    setup_logging()
    if args.speed <= 0:
        print(f"error: --speed must be > 0, got {args.speed}", file=sys.stderr)
        return 2
    try:
        segments = list_segments(args.recording)
    except RecordingError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    stop = stop_on_signals()
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

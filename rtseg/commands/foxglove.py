"""`rtseg foxglove`: serve a running segmenter's masks and video to Foxglove (rtseg.bridges.foxglove)."""
from __future__ import annotations

import argparse
import sys

from rtseg.bridges.foxglove import DEFAULT_PORT, FoxgloveBridge
from rtseg.bridges.settings import SettingsError, add_feed_arguments, feed_settings, serve_until_signal
from rtseg.commands import setup_logging
from rtseg.proc import EXIT_FATAL, EXIT_OK

DESCRIPTION = f"""\
Serve the masks (and video) of a running segmenter to Foxglove over its WebSocket protocol.
Open Foxglove, "Open connection" -> Foxglove WebSocket -> ws://HOST:{DEFAULT_PORT}, and add an
Image panel on /<camera>/image with /<camera>/masks ticked as annotations. Clients speaking
the protocol as foxglove.sdk.v1 (current Foxglove) or foxglove.websocket.v1 (older Foxglove
Studio, Lichtblick, roslibjs-foxglove) are both served.

  rtseg foxglove configs/demo.yaml --ring auto      # same host as `rtseg run`: frames from shared memory
  rtseg foxglove --pub tcp://HOST:5555 --camera demo   # frames from the JPEG topic (network.frame_topic)
  rtseg foxglove configs/demo.yaml --host 0.0.0.0   # reachable from other machines (no authentication!)

Topics: /<camera>/image (foxglove.CompressedImage), /<camera>/masks (foxglove.ImageAnnotations:
each object's outline in its colour, label "id score state"), /<camera>/events (JSON prompt
events), /<camera>/object_events (JSON lifecycle and zone events), /rtseg/status (JSON status). Ctrl-C stops it.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = DESCRIPTION
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    add_feed_arguments(parser)
    parser.add_argument("--host", help="address to listen on (default: foxglove.host or 127.0.0.1)")
    parser.add_argument("--port", type=int, help=f"WebSocket port (default: foxglove.port or {DEFAULT_PORT}; 0 any)")
    parser.add_argument("--fps", type=float, help="ring frames per second and camera, at most (default 10)")
    parser.add_argument("--quality", type=int, help="JPEG quality of ring frames, 1-100 (default 80)")


def main(args: argparse.Namespace) -> int:
    setup_logging(args.log_level)
    try:
        feed = feed_settings(args)
    except SettingsError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_FATAL
    fx = feed.config.foxglove if feed.config else None
    host = args.host or (fx.host if fx else "127.0.0.1")
    port = args.port if args.port is not None else (fx.port if fx else DEFAULT_PORT)
    try:
        bridge = FoxgloveBridge(feed.pub, cameras=feed.cameras, rings=feed.rings, host=host, port=port,
                                fps=args.fps or (fx.fps if fx else 10.0),
                                quality=args.quality or (fx.quality if fx else 80), curve=feed.curve)
        bridge.start()
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_FATAL
    print(f"serving Foxglove on ws://{host}:{bridge.port}", flush=True)
    serve_until_signal(bridge.stop)
    return EXIT_OK

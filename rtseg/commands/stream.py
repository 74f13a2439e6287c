"""`rtseg stream`: each camera with its masks drawn, as MJPEG over HTTP (rtseg.bridges.mjpeg)."""
from __future__ import annotations

import argparse
import os
import sys

from rtseg.bridges.mjpeg import DEFAULT_PORT, MjpegServer
from rtseg.bridges.settings import SettingsError, add_feed_arguments, feed_settings, serve_until_signal
from rtseg.commands import setup_logging
from rtseg.proc import EXIT_FATAL, EXIT_OK

DESCRIPTION = f"""\
Serve each camera with its masks drawn as an MJPEG stream over HTTP, which browsers, VLC,
ffmpeg and most NVRs open:

  http://HOST:{DEFAULT_PORT}/              a page listing the cameras
  http://HOST:{DEFAULT_PORT}/CAMERA.mjpg   the live stream     http://HOST:{DEFAULT_PORT}/CAMERA.jpg   a snapshot

  rtseg stream configs/demo.yaml --ring auto          # same host as `rtseg run`: frames from shared memory
  rtseg stream --pub tcp://HOST:5555 --camera demo    # frames from the JPEG topic (network.frame_topic)
  RTSEG_STREAM_TOKEN=s3cret rtseg stream configs/demo.yaml --host 0.0.0.0
        # other machines: vlc 'http://HOST:{DEFAULT_PORT}/demo.mjpg?token=s3cret'

Listens on 127.0.0.1 unless --host says otherwise; any other address needs a token, given by
clients as ?token=..., 'Authorization: Bearer ...' or 'X-Rtseg-Token: ...'. A slow client
misses pictures and slows nobody else. Ctrl-C stops it.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = DESCRIPTION
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    add_feed_arguments(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"HTTP port (default {DEFAULT_PORT}; 0 any)")
    parser.add_argument("--fps", type=float, default=10.0, help="pictures per second and camera, at most (default 10)")
    parser.add_argument("--quality", type=int, default=80, help="JPEG quality 1-100 (default 80)")
    parser.add_argument("--alpha", type=float, default=0.45, help="mask opacity 0-1 (default 0.45)")
    parser.add_argument("--token", help="required from clients when bound to a non-loopback address "
                                        "(default: $RTSEG_STREAM_TOKEN)")


def main(args: argparse.Namespace) -> int:
    setup_logging(args.log_level)
    try:
        feed = feed_settings(args)
        server = MjpegServer(feed.pub, feed.cameras or [], rings=feed.rings, host=args.host, port=args.port,
                             fps=args.fps, quality=args.quality, alpha=args.alpha,
                             token=args.token or os.environ.get("RTSEG_STREAM_TOKEN"), curve=feed.curve)
    except (SettingsError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_FATAL
    except OSError as e:
        print(f"error: cannot listen on {args.host}:{args.port}: {e.strerror or e} (is the port in use? choose "
              "another with --port)", file=sys.stderr)
        return EXIT_FATAL
    server.start()
    print(f"streaming on http://{args.host}:{server.port}/ ({', '.join(server.cameras)})", flush=True)
    serve_until_signal(server.stop)
    return EXIT_OK

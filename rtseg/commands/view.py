"""`rtseg view`: the live viewer (rtseg.view.viewer) on a running pipeline or any publisher."""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from rtseg.commands import setup_logging
from rtseg.proc import EXIT_FATAL, stop_on_signals
from rtseg.protocol import DEFAULT_CONTROL, DEFAULT_PUB
from rtseg.view.viewer import ViewerError, display_available, options_from_args, release_qt, run_viewer


DESCRIPTION = """\
Live viewer: the camera with each object's mask, id and score; click to steer the segmenter.

  rtseg view --config configs/demo.yaml --ring auto   # same host as `rtseg run`: frames from shared memory
  rtseg view --pub tcp://HOST:5555 --control tcp://HOST:5556 --camera demo
                                                      # another host: JPEG frames (network.frame_topic)
  rtseg view --cluster tcp://HEAD:5570 --camera gate  # a camera of `rtseg cluster`, wherever it runs

Mouse: left click = object point (selected object, or a new one), right click = background
point (selected object), drag = box. Keys: N new object, Esc deselect, Delete remove the
selected object, R reset the camera, Space pause (clicks then go to the frame on screen).
Ctrl-C or SIGTERM closes the window (exit status 0).
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = DESCRIPTION
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--config", help="take endpoints, camera and viewer settings from this YAML config")
    parser.add_argument("--pub", help=f"the segmenter's publisher (default: config's network.pub or {DEFAULT_PUB})")
    parser.add_argument("--control", help=f"the control socket (default: network.control or {DEFAULT_CONTROL})")
    parser.add_argument("--cluster", metavar="ADDR", help="a camera of `rtseg cluster`: its directory "
                        "(tcp://HEAD:5570) says where it runs, and the viewer follows it when it moves")
    parser.add_argument("--view-only", action="store_true", help="never send prompts")
    parser.add_argument("--camera", help="camera id (default: viewer.camera, the first camera, or the "
                                         "segmenter's only camera)")
    parser.add_argument("--ring", metavar="NAME", help="same host: read frames from this shared-memory ring; 'auto' "
                                                        "with --config finds the running pipeline's ring. Without "
                                                        "it, frames come from the JPEG topic")
    parser.add_argument("--frame-buffer", type=int, metavar="N", help="recent frames kept to meet their masks "
                                                                      "(default 30)")
    parser.add_argument("--fps", type=float, help="show at most this many frames per second (default 30)")
    parser.add_argument("--client-key", type=Path, metavar="FILE", help="CURVE: this client's NAME.key_secret")
    parser.add_argument("--server-key", type=Path, metavar="FILE", help="CURVE: the server's public server.key")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR (default INFO)")


def main(args: argparse.Namespace) -> int:
    setup_logging(args.log_level)
    try:
        options = options_from_args(args)
    except ViewerError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_FATAL
    if not display_available():
        print("error: no display (DISPLAY / WAYLAND_DISPLAY unset): run the viewer where there is a screen, "
              "or set QT_QPA_PLATFORM=offscreen for a test", file=sys.stderr)
        return EXIT_FATAL
    stop = stop_on_signals()  # Ctrl-C or `kill` closes the window, exit 0
    code = run_viewer(options, should_stop=stop.is_set)
    release_qt()
    # The window, the feed's threads and sockets are closed and the ring released: end here.
    # Python's own teardown of the Qt modules takes longer than all of that (~0.6 s on a busy
    # 2-core machine) and is where PySide6's exit crashes live (pyqtgraph.exit() does the same).
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)

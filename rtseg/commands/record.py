"""`rtseg record [CONFIG]`: record what a running segmenter publishes (rtseg.recording.recorder)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pydantic import ValidationError

from rtseg.commands import setup_logging
from rtseg.config import Config, ConfigError, NetworkConfig, RecorderConfig, load_config
from rtseg.proc import EXIT_FATAL, stop_on_signals
from rtseg.recording.recorder import Recorder


# --------------------------------------------------------------------------- CLI
DESCRIPTION = """\
Record what a running segmenter publishes into crash-safe segments.

examples:
  rtseg record configs/demo.yaml                     # recorder.* and network.pub of the config
  rtseg record --pub tcp://127.0.0.1:5555 --dir recordings --segment-seconds 30
  rtseg record configs/demo.yaml --video overlay     # also MP4s with the masks drawn
  rtseg record configs/demo.yaml --frames            # frames in the segments (Foxglove shows video)
  rtseg record --retention-gb 50 --retention-hours 24
  rtseg record --cluster tcp://HEAD:5570 --camera gate   # a camera of `rtseg cluster`, wherever it runs

A kill loses nothing that arrived: every record is written as it comes; closed segments are
`.mcap` files, the open one is `.mcap.part` (readable by export/replay at any time).
Exit status: 0 stopped (Ctrl-C), 2 the folder cannot be written (disk full, read-only...).
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = DESCRIPTION
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("config", nargs="?", help="YAML config: its recorder section and network.pub (optional)")
    parser.add_argument("--pub", help="endpoint to subscribe to (default: the config's network.pub)")
    parser.add_argument("--cluster", metavar="ADDR", help="record cameras of `rtseg cluster` through its directory "
                        "(tcp://HEAD:5570), following them when they move; instead of --pub")
    parser.add_argument("--dir", type=Path, help="recording folder (default: recorder.directory)")
    parser.add_argument("--segment-seconds", type=float, help="close a segment after this many seconds")
    parser.add_argument("--retention-gb", type=float, help="delete the oldest segments beyond this size")
    parser.add_argument("--retention-hours", type=float, help="delete segments older than this")
    parser.add_argument("--video", choices=["none", "raw", "overlay"], help="MP4 per segment and camera")
    parser.add_argument("--frames", action="store_true", default=None,
                        help="record the frame topic even without an MP4 (for Foxglove, export, replay)")
    parser.add_argument("--no-foxglove", dest="foxglove", action="store_false", default=None,
                        help="do not write the Foxglove channels (CompressedImage, ImageAnnotations, JSON)")
    parser.add_argument("--video-fps", type=float, help="MP4 frame rate (default: network.frame_topic.fps)")
    parser.add_argument("--camera", action="append", dest="cameras", help="record only this camera (repeatable)")
    parser.add_argument("--client-key", type=Path, help="CURVE: this client's .key_secret file")
    parser.add_argument("--server-key", type=Path, help="CURVE: the segmenter's public .key file")
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING or ERROR")


def _settings(args: argparse.Namespace) -> tuple[RecorderConfig, str, float, str]:
    cfg = load_config(args.config) if args.config else None
    rc = cfg.recorder if cfg else RecorderConfig()
    overrides = {k: v for k, v in {"directory": args.dir, "segment_seconds": args.segment_seconds,
                                   "retention_gb": args.retention_gb, "retention_hours": args.retention_hours,
                                   "video": args.video, "frames": args.frames,
                                   "foxglove": args.foxglove}.items() if v is not None}
    rc = RecorderConfig.model_validate({**rc.model_dump(), **overrides})
    if cfg is not None:  # the config's rules again, with the command line's recorder settings
        Config.model_validate({**cfg.model_dump(), "recorder": rc.model_dump()})
    network = cfg.network if cfg else NetworkConfig()
    fps = args.video_fps or network.frame_topic.fps
    return rc, args.pub or network.pub, fps, (args.log_level or (cfg.log_level if cfg else "INFO")).upper()


def main(args: argparse.Namespace) -> int:
    try:
        rc, endpoint, fps, level = _settings(args)
    except (ConfigError, ValidationError) as e:
        print(f"invalid settings:\n{e}", file=sys.stderr)
        return EXIT_FATAL
    setup_logging(level)
    from rtseg.security import CurveClient, CurveKeyError

    try:
        curve = CurveClient.from_options(args.client_key, args.server_key)
    except CurveKeyError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_FATAL
    stop = stop_on_signals()
    return Recorder(rc, args.cluster or endpoint, cameras=args.cameras, video_fps=fps, curve=curve,
                    cluster=bool(args.cluster)).run(stop.is_set)

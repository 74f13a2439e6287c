"""Where a bridge (`rtseg foxglove`, `rtseg stream`) takes masks and frames from: the
command-line options both share and how they resolve against a config."""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rtseg.config import Config
from rtseg.proc import stop_on_signals
from rtseg.protocol import DEFAULT_PUB
from rtseg.view.viewer import ViewerError, config_and_publisher, running_ring


class SettingsError(ValueError):
    """Options that cannot work together; the message says which and what to do."""


@dataclass
class FeedSettings:
    pub: str
    cameras: list[str] | None  # None: every camera the publisher has
    rings: dict[str, str] = field(default_factory=dict)  # camera -> same-host ring
    curve: Any = None
    config: Config | None = None


def add_feed_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", nargs="?", help="YAML config of the pipeline: its network.pub, cameras, keys")
    parser.add_argument("--pub", help=f"the segmenter's publisher (default: network.pub or {DEFAULT_PUB})")
    parser.add_argument("--camera", action="append", dest="cameras", metavar="ID",
                        help="only this camera (repeatable; default: the config's cameras)")
    parser.add_argument("--ring", metavar="auto|NAME",
                        help="same host: frames from shared memory; 'auto' with a config finds the running "
                             "pipeline's rings, NAME is one camera's ring. Without it, frames come from the "
                             "JPEG topic (network.frame_topic.enabled)")
    parser.add_argument("--client-key", type=Path, metavar="FILE", help="CURVE: this client's NAME.key_secret")
    parser.add_argument("--server-key", type=Path, metavar="FILE", help="CURVE: the server's public server.key")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR (default INFO)")


def feed_settings(args: argparse.Namespace) -> FeedSettings:
    """Resolve the shared options; raises SettingsError naming what is wrong."""
    try:
        cfg, pub = config_and_publisher(args.config, args.pub)
    except ViewerError as e:
        raise SettingsError(str(e)) from None
    cameras = args.cameras or ([c.id for c in cfg.cameras] if cfg else None)
    if cfg and args.cameras:
        unknown = sorted(set(args.cameras) - {c.id for c in cfg.cameras})
        if unknown:
            raise SettingsError(f"camera(s) {unknown} are not in {args.config}; cameras: {[c.id for c in cfg.cameras]}")
    rings: dict[str, str] = {}
    if args.ring == "auto":
        if cfg is None or not cameras:
            raise SettingsError("--ring auto needs the pipeline's config (it finds the rings that `rtseg run` made)")
        try:
            rings = {cam: running_ring(cfg, cam) for cam in cameras}
        except ViewerError as e:
            raise SettingsError(str(e)) from None
    elif args.ring:
        if not cameras or len(cameras) != 1:
            raise SettingsError("--ring NAME is one camera's ring: give exactly one --camera (or use --ring auto)")
        rings = {cameras[0]: args.ring}
    return FeedSettings(pub, cameras, rings, _curve(args, cfg), cfg)


def _curve(args: argparse.Namespace, cfg: Config | None) -> Any:
    if not (args.client_key or args.server_key):
        if cfg is not None and cfg.security.curve:
            from rtseg.security import CurveKeyError, pipeline_client

            try:
                return pipeline_client(cfg.security)
            except CurveKeyError as e:
                raise SettingsError(str(e)) from None
        return None
    from rtseg.security import CurveClient, CurveKeyError

    try:
        return CurveClient.from_options(args.client_key, args.server_key)
    except (CurveKeyError, OSError) as e:
        raise SettingsError(f"cannot load CURVE keys: {e}") from None


def serve_until_signal(stop_server: Any) -> None:
    """Block until SIGINT or SIGTERM, then call `stop_server()` (the commands' main loop)."""
    stop = stop_on_signals()
    try:
        while not stop.wait(0.5):
            pass
    finally:
        stop_server()

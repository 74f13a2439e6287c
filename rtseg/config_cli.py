"""`rtseg validate-config CONFIG`: parse and check a config; print what is wrong and where."""
from __future__ import annotations

import argparse
import sys

from rtseg.config import Config, ConfigError, load_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="YAML config file")


def load_or_report(path: str) -> Config | None:
    """The config at `path`, or None after printing what is wrong with it to stderr."""
    try:
        return load_config(path)
    except ConfigError as e:
        print(f"invalid config:\n{e}", file=sys.stderr)
        return None


def main(args: argparse.Namespace) -> int:
    cfg = load_or_report(args.config)
    if cfg is None:
        return 1
    cams = ", ".join(c.id for c in cfg.cameras)
    print(f"{args.config}: OK ({len(cfg.cameras)} camera(s): {cams}; model {cfg.model.name})")
    return 0

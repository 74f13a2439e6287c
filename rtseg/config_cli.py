"""`rtseg validate-config CONFIG`: parse and check a config; print what is wrong and where."""
from __future__ import annotations

import argparse
import sys

from rtseg.config import ConfigError, load_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="YAML config file")


def main(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        print(f"invalid config:\n{e}", file=sys.stderr)
        return 1
    cams = ", ".join(c.id for c in cfg.cameras)
    print(f"{args.config}: OK ({len(cfg.cameras)} camera(s): {cams}; model {cfg.model.name})")
    return 0

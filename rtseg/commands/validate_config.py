"""`rtseg validate-config CONFIG`: parse and check a config; print what is wrong and where."""
from __future__ import annotations

import argparse

from rtseg.config import load_or_report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="YAML config file")


def main(args: argparse.Namespace) -> int:
    cfg = load_or_report(args.config)
    if cfg is None:
        return 1
    cams = ", ".join(c.id for c in cfg.cameras)
    print(f"{args.config}: OK ({len(cfg.cameras)} camera(s): {cams}; model {cfg.model.name})")
    return 0

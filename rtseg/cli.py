"""The `rtseg` command. Each subcommand lives in its own module, which provides
`add_arguments(parser)` and `main(args) -> int`; this file only wires them up, importing
a module when its subcommand runs (so `rtseg --help` does not import torch)."""
from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help); the module of `NAME` is rtseg/commands/NAME.py
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "run": ("rtseg.commands.run", "run cameras, segmenter (and viewer/recorder) from a config"),
    "view": ("rtseg.commands.view", "live viewer: masks over video, click/box to prompt"),
    "record": ("rtseg.commands.record", "record masks (and video) into crash-safe segments"),
    "export": ("rtseg.commands.export", "export a recording to COCO, DAVIS PNGs or MP4"),
    "replay": ("rtseg.commands.replay", "republish a recording on the protocol"),
    "foxglove": ("rtseg.commands.foxglove", "serve masks and video to Foxglove (WebSocket)"),
    "stream": ("rtseg.commands.stream", "MJPEG over HTTP: each camera with its masks, for browsers, VLC, NVRs"),
    "prompt": ("rtseg.commands.prompt", "send a prompt / remove / reset / list / status request"),
    "keys": ("rtseg.commands.keys", "generate CURVE key pairs for secure remote use"),
    "bench": ("rtseg.commands.bench", "benchmark the streaming engine against the official predictor"),
    "validate-config": ("rtseg.commands.validate_config", "check a config file (bad key and line) and the sources, keys and checkpoint it names"),
    "download": ("rtseg.commands.download", "download official SAM 2.1 checkpoints"),
    "cluster": ("rtseg.commands.cluster", "run a config's cameras across a Ray cluster; `cluster status`"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rtseg",
        description="Streaming real-time camera segmentation with SAM 2. "
        "Run `rtseg COMMAND --help` for the options of a command.",
    )
    from rtseg import __version__

    parser.add_argument("--version", action="version", version=f"rtseg {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in SUBCOMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    if not argv or argv[0] not in SUBCOMMANDS:
        parser.parse_args(argv)  # handles --help / --version / unknown command
        parser.print_help()
        return 2
    name, rest = argv[0], argv[1:]
    module = importlib.import_module(SUBCOMMANDS[name][0])
    sub = argparse.ArgumentParser(prog=f"rtseg {name}", description=SUBCOMMANDS[name][1])
    module.add_arguments(sub)
    args = sub.parse_args(rest)
    return int(module.main(args) or 0)


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""Download official SAM 2.1 checkpoints into checkpoints/ (resumable, verified).

The same as `rtseg download`; see rtseg/commands/download.py and README "Checkpoints". Example:

    python tools/download_checkpoints.py tiny
    python tools/download_checkpoints.py all --dir checkpoints
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout without installing

from rtseg.commands import download  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="download_checkpoints.py", description=__doc__.splitlines()[0])
    download.add_arguments(parser)
    return download.main(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

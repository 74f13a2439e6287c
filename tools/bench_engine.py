#!/usr/bin/env python
"""Benchmark rtseg's StreamingPredictor against sam2's official SAM2VideoPredictor.

The same as `rtseg bench`; see rtseg/commands/bench.py (arguments) and rtseg/engine/bench.py (measuring); README "Measured performance". Example:

    python tools/bench_engine.py --objects 1,4,8,16 --cameras 1,4 --compile --image-size 512 --frames 20
"""
from __future__ import annotations

import argparse
import sys

from rtseg.commands import bench


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_engine.py", description=__doc__.splitlines()[0])
    bench.add_arguments(parser)
    return bench.main(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

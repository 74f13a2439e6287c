#!/usr/bin/env python
"""rtseg's streaming engine against sam2's official video predictor: `rtseg bench` under the
name the engine issues use. Every option is `rtseg bench`'s (README, "Benchmark"):

    .venv/bin/python tools/bench_engine.py --objects 1,8 --image-size 512 --frames 24 --interleave
    .venv/bin/python tools/bench_engine.py --objects 1,4,8,16 --cameras 1,4 --compile --image-size 512
    .venv/bin/python tools/bench_engine.py --device cuda --image-size 1024 --objects 1,8,16 --cameras 1,4 \\
        --compile graphs --frames 300
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from rtseg.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))

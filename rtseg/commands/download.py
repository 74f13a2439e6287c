"""`rtseg download [MODEL ...]`: fetch official SAM 2.1 checkpoints (rtseg.engine.download)."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from rtseg.engine.checkpoints import CheckpointError
from rtseg.engine.download import BASE_URL_ENV, DEFAULT_DIR, DownloadError, download_checkpoint
from rtseg.engine.models import MODELS, ModelSpec, model_spec


def add_arguments(parser: argparse.ArgumentParser) -> None:
    names = ", ".join(s.name for s in MODELS.values())
    parser.add_argument(
        "models", nargs="+", metavar="MODEL",
        help=f"model name ({names}), SAM 2.1 size (tiny, small, base_plus, large), or 'all' (every SAM 2.1 size)",
    )
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="where the files go (default: checkpoints)")
    parser.add_argument(
        "--base-url", default=None,
        help=f"fetch <URL>/<official file name> from a mirror instead (or set ${BASE_URL_ENV})",
    )
    parser.add_argument("--timeout", type=float, default=30, help="network timeout in seconds (default: 30)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        specs = _resolve(args.models)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    failed = 0
    for spec in specs:
        try:
            path = download_checkpoint(
                spec, args.dir, base_url=args.base_url, progress=not args.no_progress, timeout_s=args.timeout
            )
        except (DownloadError, CheckpointError, OSError) as e:
            print(f"error: {spec.name}: {e}", file=sys.stderr)
            failed += 1
        else:
            print(f"{spec.name}: {path}")
    return 1 if failed else 0


def _resolve(names: list[str]) -> list[ModelSpec]:
    specs: list[ModelSpec] = []
    for name in names:
        for spec in (s for s in MODELS.values() if s.name.startswith("sam2.1")) if name == "all" else [model_spec(name)]:
            if spec not in specs:
                specs.append(spec)
    return specs

"""`rtseg cluster CONFIG`: a config's cameras across the GPU hosts of a Ray cluster
(rtseg.cluster.manager); `rtseg cluster status`: where each camera runs, from the directory."""
from __future__ import annotations

import argparse
import json
import sys

HELP = """\
Run a config's cameras on a running Ray cluster (docs/CLUSTER.md): one segmenter per GPU
(or per `rtseg_segmenter` resource on CPU nodes) carrying up to cluster.cameras_per_segmenter
cameras, each camera's capture on its segmenter's node. A node that leaves takes its cameras
to the remaining capacity, objects included; cameras that do not fit wait as `unplaced`
until a node joins. Clients find cameras through the directory on the head:
`--cluster tcp://HEAD:5570` for rtseg view / record / prompt, Subscriber(cluster=...).
SIGINT/SIGTERM stop every actor this command started.

examples:
  ray start --head --port 6379                 # on the head
  ray start --address HEAD:6379                # on every GPU host
  rtseg cluster configs/site.yaml              # on the head
  rtseg cluster status --cluster tcp://HEAD:5570
  rtseg cluster status --json
"""

COLUMNS = ("camera", "state", "host", "node", "segmenter", "device", "fps", "objects", "frames", "moves", "message")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = HELP
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("config", help="YAML config (its cameras, model, cluster section), or `status`")
    parser.add_argument("--address", default="auto", help="Ray cluster address (default: auto, the local node's)")
    parser.add_argument("--weights", choices=["checkpoint", "random"], default=None,
                        help="'random': random weights (smoke tests; masks meaningless)")
    parser.add_argument("--fresh", action="store_true", help="start with no objects: forget the prompt log")
    parser.add_argument("--cluster", default="tcp://127.0.0.1:5570",
                        help="status: the directory's endpoint (default tcp://127.0.0.1:5570)")
    parser.add_argument("--json", action="store_true", help="status: print the directory's answer as JSON")
    parser.add_argument("--timeout", type=float, default=3.0, help="status: seconds to wait for the directory")
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING or ERROR")


def status_table(cameras: dict[str, dict]) -> str:
    rows = [COLUMNS]
    for cam, e in sorted(cameras.items()):
        rows.append((cam, e.get("state"), e.get("host") or "-", (e.get("node") or "-")[:12], e.get("segmenter") or "-",
                     e.get("device") or "-", f"{e.get('fps') or 0:.1f}", ",".join(str(o) for o in e.get("objects") or [])
                     or "-", str(e.get("frames") or 0), str(e.get("moves") or 0), e.get("message") or ""))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(COLUMNS) - 1)]
    return "\n".join("  ".join(str(v).ljust(w) for v, w in zip(r, widths)) + "  " + str(r[-1]) for r in rows)


def status(args: argparse.Namespace) -> int:
    from rtseg.locate import LocateError, Locator

    try:
        with Locator(args.cluster, timeout=args.timeout) as loc:
            cameras = loc.locate()
    except LocateError as e:
        print(f"error: {e}", file=sys.stderr)
        return 3 if e.code == "timeout" else 1
    print(json.dumps(cameras, indent=2) if args.json else status_table(cameras))
    return 0


def main(args: argparse.Namespace) -> int:
    if args.config == "status":
        return status(args)
    from pathlib import Path

    from rtseg.commands import setup_logging
    from rtseg.commands.run import resolve_checkpoint
    from rtseg.config import load_or_report

    cfg = load_or_report(args.config)
    if cfg is None:
        return 2
    setup_logging(args.log_level or cfg.log_level)
    try:
        import ray  # noqa: F401
    except ImportError:
        print("error: rtseg cluster needs Ray: pip install 'rtseg[cluster]'", file=sys.stderr)
        return 2
    if args.fresh:
        (Path(cfg.supervisor.state_dir) / "prompts.jsonl").unlink(missing_ok=True)
    checkpoint = resolve_checkpoint(cfg, args.weights)
    if args.weights == "random":
        cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"weights": "random"})})
    from rtseg.cluster.manager import ClusterManager

    try:
        return ClusterManager(cfg, checkpoint, address=args.address).run()
    except ConnectionError as e:  # no Ray cluster there
        print(f"error: cannot reach a Ray cluster at {args.address!r} ({e}); start one with `ray start --head`, "
              "or give --address HEAD:6379", file=sys.stderr)
        return 2

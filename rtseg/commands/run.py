"""`rtseg run CONFIG`: the whole pipeline of a config, under one supervisor (rtseg.pipeline.supervisor)."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from rtseg.commands import setup_logging
from rtseg.config import Config
from rtseg.pipeline.supervisor import Supervisor

log = logging.getLogger("rtseg.run")


def checkpoint_path(cfg: Config) -> Path:
    """Where the config's checkpoint is: model.checkpoint, else checkpoints/<official file name>."""
    from rtseg.engine.download import default_checkpoint_path
    from rtseg.engine.models import model_spec

    return Path(cfg.model.checkpoint) if cfg.model.checkpoint else default_checkpoint_path(model_spec(cfg.model.name))


def resolve_checkpoint(cfg: Config, weights: str | None) -> str | None:
    """The checkpoint file to load (None: random weights); downloads a missing official one."""
    if (weights or cfg.model.weights) == "random":
        return None
    from rtseg.engine.download import download_checkpoint
    from rtseg.engine.models import model_spec

    spec = model_spec(cfg.model.name)
    path = checkpoint_path(cfg)
    if path.is_file():
        return str(path)
    from rtseg.engine.download import checkpoint_url

    log.info("checkpoint %s missing: downloading %s", path, checkpoint_url(spec, None))
    try:
        return str(download_checkpoint(spec.name, path.parent))
    except Exception as e:  # no network, disk full, ...
        raise SystemExit(
            f"error: checkpoint {path} is missing and could not be downloaded ({e}).\n"
            f"Fetch it with `rtseg download {spec.name}` (or copy {spec.checkpoint_file} into {path.parent}/), "
            "or run with --weights random for a smoke test."
        ) from None


RUN_HELP = """\
Start the pipeline a config describes: one capture process per camera, the segmenter, and the
recorder/viewer if enabled. Masks go out on network.pub, prompts come in on network.control.
Crashed or hung processes are restarted (objects are restored from the prompt log);
Ctrl-C or SIGTERM stops everything within supervisor.shutdown_timeout_s.

examples:
  rtseg run configs/demo.yaml                         # downloads the checkpoint if missing
  rtseg run configs/demo-cpu.yaml --weights random    # no GPU, no weights: a smoke test
  rtseg run configs/rtsp.yaml --headless --log-level DEBUG
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = RUN_HELP
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("config", help="YAML config (see configs/; check it with rtseg validate-config)")
    parser.add_argument("--weights", choices=["checkpoint", "random"], default=None,
                        help="'random': run the pipeline with random weights (smoke tests; masks meaningless)")
    parser.add_argument("--headless", action="store_true", help="never start the viewer, even if the config enables it")
    parser.add_argument("--fresh", action="store_true",
                        help="start with no objects: forget the prompt log of earlier runs of this config")
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING or ERROR (default: config's log_level)")


def main(args: argparse.Namespace) -> int:
    from rtseg.config import load_or_report

    cfg = load_or_report(args.config)
    if cfg is None:
        return 2
    level = (args.log_level or cfg.log_level).upper()
    setup_logging(level, process_names=True)
    if args.fresh:
        (Path(cfg.supervisor.state_dir) / "prompts.jsonl").unlink(missing_ok=True)
    checkpoint = resolve_checkpoint(cfg, args.weights)
    if args.weights == "random":
        cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"weights": "random"})})
    return Supervisor(cfg, checkpoint=checkpoint, headless=args.headless).run()

"""`rtseg validate-config CONFIG`: parse and check a config; print what is wrong and where.

Beyond the file itself it checks what `rtseg run` would trip over on this machine: each
camera's source string (scheme; a file or folder that exists), the CURVE key files and the
authorized-clients folder, and the checkpoint (present, or to be downloaded by `rtseg run`)."""
from __future__ import annotations

import argparse
import sys

from rtseg.config import Config, load_or_report

DESCRIPTION = """\
Check a config without running it: the YAML, every key and value (line and dotted key of
each problem), each camera's source string, the CURVE key files (exist, readable, the right
kind) and the checkpoint (present, or downloaded by `rtseg run`). Exit status: 0 usable,
1 something to fix.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = DESCRIPTION
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("config", help="YAML config file")


def source_problems(cfg: Config) -> list[str]:
    from rtseg.sources import SourceError, file_source_path, redact_url

    problems = []
    for cam in cfg.cameras:
        try:
            path = file_source_path(cam.source)
        except SourceError as e:  # an unknown scheme, an unknown file option
            problems.append(f"cameras.{cam.id}.source: {e}")
            continue
        if path is not None and not path.exists():
            problems.append(f"cameras.{cam.id}.source: no video file or image folder {redact_url(str(path))!r}")
    return problems


def key_problems(cfg: Config) -> list[str]:
    from rtseg.security import CurveClient, CurveKeyError, authorized_keys, load_key_pair

    sec, checks = cfg.security, []
    if sec.curve:
        checks.append(("security.server_secret_key", lambda: load_key_pair(sec.server_secret_key, need_secret=True)))
        checks.append(("security.authorized_clients", lambda: authorized_keys(sec.authorized_clients)))
        if sec.client_secret_key is not None:
            checks.append(("security.client_secret_key",
                           lambda: load_key_pair(sec.client_secret_key, need_secret=True)))
    if cfg.viewer.client_key is not None or cfg.viewer.server_key is not None:
        checks.append(("viewer.client_key / viewer.server_key",
                       lambda: CurveClient.from_options(cfg.viewer.client_key, cfg.viewer.server_key)))
    problems = []
    for key, check in checks:
        try:
            check()
        except CurveKeyError as e:
            problems.append(f"{key}: {e}")
    return problems


def checkpoint_note(cfg: Config) -> str:
    from rtseg.commands.run import checkpoint_path
    from rtseg.engine.download import checkpoint_url
    from rtseg.engine.models import model_spec

    if cfg.model.weights == "random":
        return "model.weights is random: no checkpoint is loaded (masks are meaningless)"
    path = checkpoint_path(cfg)
    if path.is_file():
        return f"checkpoint {path} is present"
    spec = model_spec(cfg.model.name)
    return (f"checkpoint {path} is missing: `rtseg run` will download it from {checkpoint_url(spec)} "
            f"(or now: `rtseg download {spec.name} --dir {path.parent}`)")


def main(args: argparse.Namespace) -> int:
    cfg = load_or_report(args.config)
    if cfg is None:
        return 1
    problems = source_problems(cfg) + key_problems(cfg)
    if problems:
        print(f"{args.config}: the file is valid, but:\n" + "\n".join(f"  {p}" for p in problems), file=sys.stderr)
        return 1
    cams = ", ".join(c.id for c in cfg.cameras)
    print(f"{args.config}: OK ({len(cfg.cameras)} camera(s): {cams}; model {cfg.model.name}; "
          f"{checkpoint_note(cfg)})")
    return 0

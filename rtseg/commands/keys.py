"""`rtseg keys OUT_DIR [--name NAME] [--authorize FOLDER]`: generate a CURVE key pair."""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from rtseg.security import CurveKeyError, create_key_pair

DESCRIPTION = """\
Generate a CURVE key pair for using rtseg across machines: OUT_DIR/NAME.key (public, give it
away) and OUT_DIR/NAME.key_secret (secret, mode 600, keep it where it is).

Typical set-up:
  server$ rtseg keys keys/ --name server
  laptop$ rtseg keys keys/ --name laptop        # then copy laptop.key to the server's
                                               # keys/authorized/ and server.key to the laptop
  (or, on one machine: rtseg keys keys/ --name laptop --authorize keys/authorized)
in the server's config:
  security: {curve: true, server_secret_key: keys/server.key_secret,
             authorized_clients: keys/authorized}
  network: {pub: "tcp://0.0.0.0:5555", control: "tcp://0.0.0.0:5556"}
on the laptop:
  rtseg prompt --endpoint tcp://SERVER:5556 --client-key keys/laptop.key_secret \
               --server-key keys/server.key list
Only clients whose public .key is in the authorized folder can subscribe or send prompts;
the segmenter reads that folder when it starts.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = DESCRIPTION
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("out_dir", metavar="OUT_DIR", type=Path, help="folder to write the key pair into")
    parser.add_argument("--name", default="server",
                        help="file name of the pair, e.g. server or client-laptop (default: server)")
    parser.add_argument("--authorize", metavar="FOLDER", type=Path,
                        help="also copy the public key into this authorized-clients folder")
    parser.add_argument("--force", action="store_true", help="overwrite an existing pair of that name")


def main(args: argparse.Namespace) -> int:
    name = args.name
    if not name or "/" in name or name.startswith("."):
        print(f"rtseg keys: --name must be a plain file name, got {name!r}", file=sys.stderr)
        return 2
    try:
        public, secret = create_key_pair(args.out_dir, name, overwrite=args.force)
    except CurveKeyError as e:
        print(f"rtseg keys: {e}", file=sys.stderr)
        return 1
    print(f"public key: {public}")
    print(f"secret key: {secret} (mode 600; keep it secret)")
    if args.authorize is not None:
        args.authorize.mkdir(parents=True, exist_ok=True)
        target = shutil.copy(public, args.authorize / public.name)
        print(f"authorized: {target} (a segmenter reads the folder when it starts)")
    return 0

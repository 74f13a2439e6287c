"""`rtseg prompt`: send one control request from the terminal and print the reply as JSON."""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from rtseg.protocol import DEFAULT_CONTROL


DESCRIPTION = """\
Send one request to a running segmenter's control socket and print the reply as JSON.

examples:
  rtseg prompt --camera demo points 320,240 --obj 1              # click object 1
  rtseg prompt --camera demo points 320,240 100,80 --labels 1 0 --obj 1
                                                   # a positive and a negative click
  rtseg prompt --camera demo box 100,80,260,400 --obj 2 --frame 1234
                                                   # box on the frame you saw (index 1234)
  rtseg prompt --camera demo mask person.png --obj 3
                                                   # nonzero pixels of a PNG at frame size
  rtseg prompt --camera demo remove --obj 2
  rtseg prompt --camera demo reset                 # drop every object of the camera
  rtseg prompt list                                # cameras, their objects and frame sizes
  rtseg prompt status
  rtseg prompt --cluster tcp://HEAD:5570 --camera gate box 100,80,260,400 --obj 1
                                                   # a camera of `rtseg cluster`, wherever it runs

Coordinates are pixels of the camera's frame (x right, y down). --frame names the frame
the user looked at; the reply's frame_index and applied_to ("requested" or "latest") say
where the prompt went; a frame newer than the latest tracked one is refused. Exit status:
0 done, 1 refused (the reply's error is printed), 3 no reply within --timeout.
"""


def _numbers(text: str, n: int, what: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != n:
        raise argparse.ArgumentTypeError(f"{what} must be {n} comma-separated numbers, got {text!r}")
    return values


def _point(text: str) -> list[float]:
    return _numbers(text, 2, "a point (X,Y)")


def _box(text: str) -> list[float]:
    return _numbers(text, 4, "a box (X0,Y0,X1,Y1)")


def _label(text: str) -> list[int]:
    labels = []
    for v in text.split(","):
        if v not in ("0", "1"):
            raise argparse.ArgumentTypeError(f"labels are 1 (object) or 0 (background), got {text!r}")
        labels.append(int(v))
    return labels


class _CoordinatesParser(argparse.ArgumentParser):
    """An action's parser that reads `-5,240` or `-0.5,3` as coordinates (which the segmenter then
    refuses as out of frame, saying so) instead of an unknown option: Python 3.11's argparse takes
    only a plain negative number for a value. Python 3.13's own matcher is the same as this one."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = re.compile(r"-\.?\d")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = DESCRIPTION
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--endpoint", default=DEFAULT_CONTROL,
                        help=f"the segmenter's control socket (network.control; default {DEFAULT_CONTROL})")
    parser.add_argument("--cluster", metavar="ADDR",
                        help="a camera of `rtseg cluster`: ask its directory (tcp://HEAD:5570) where the camera "
                             "runs, instead of --endpoint")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="seconds to wait for the reply (default 30: a segmenter answers between frames, "
                             "and a frame can take seconds on a CPU)")
    parser.add_argument("--client-key", type=Path, metavar="FILE",
                        help="CURVE: this client's NAME.key_secret (see `rtseg keys --help`)")
    parser.add_argument("--server-key", type=Path, metavar="FILE", help="CURVE: the server's public server.key")
    camera_help = "camera id (required for points, box, mask, remove, reset)"
    parser.add_argument("--camera", help=camera_help)
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True,
                                    parser_class=_CoordinatesParser)

    def action(name: str, help_text: str, *, obj: bool = False, frame: bool = False) -> argparse.ArgumentParser:
        sub = actions.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--camera", default=argparse.SUPPRESS, help=camera_help)
        if obj:
            sub.add_argument("--obj", type=int, required=True, metavar="ID", help="object id (an integer >= 0)")
        if frame:
            sub.add_argument("--frame", type=int, metavar="INDEX",
                             help="frame index the user clicked on (default: the latest frame)")
        return sub

    points = action("points", "add clicks to an object (a new id starts a new object)", obj=True, frame=True)
    points.add_argument("points", type=_point, nargs="+", metavar="X,Y", help="click position(s) in pixels")
    points.add_argument("--labels", type=_label, nargs="+", metavar="L",
                        help="one label per point: 1 object, 0 background (default: all 1)")
    box = action("box", "give an object's box", obj=True, frame=True)
    box.add_argument("box", type=_box, metavar="X0,Y0,X1,Y1", help="box corners in pixels")
    mask = action("mask", "give an object's mask from an image file", obj=True, frame=True)
    mask.add_argument("image", type=Path, metavar="IMAGE",
                      help="image at the camera's resolution; nonzero pixels are the object")
    action("remove", "stop tracking an object", obj=True)
    action("reset", "drop every object of the camera")
    action("list", "list cameras, their objects and frame sizes")
    action("status", "the segmenter's status (fps, latency, objects, source state)")


class _UsageError(Exception):
    pass


def _request(ctl: Any, args: argparse.Namespace) -> dict[str, Any]:
    a = args.action
    if a == "list":
        return ctl.list(args.camera)
    if a == "status":
        return ctl.status(args.camera)
    if args.camera is None:
        raise _UsageError(f"rtseg prompt {a}: --camera is required (see `rtseg prompt list`)")
    if a == "points":
        labels = None if args.labels is None else [v for group in args.labels for v in group]
        if labels is not None and len(labels) != len(args.points):
            raise _UsageError(f"rtseg prompt points: {len(args.points)} point(s) but {len(labels)} label(s)")
        return ctl.add_points(args.camera, args.obj, args.points, labels, frame_index=args.frame)
    if a == "box":
        return ctl.add_box(args.camera, args.obj, args.box, frame_index=args.frame)
    if a == "mask":
        import cv2

        image = cv2.imread(str(args.image), cv2.IMREAD_GRAYSCALE)
        if image is None:
            raise _UsageError(f"rtseg prompt mask: cannot read image {args.image}")
        return ctl.add_mask(args.camera, args.obj, image > 0, frame_index=args.frame)
    if a == "remove":
        return ctl.remove(args.camera, args.obj)
    return ctl.reset(args.camera)


def main(args: argparse.Namespace) -> int:
    from rtseg.client import ControlError, Controller, ControlTimeout
    from rtseg.security import CurveClient, CurveKeyError

    try:
        curve = CurveClient.from_options(args.client_key, args.server_key)
    except CurveKeyError as e:
        print(f"rtseg prompt: {e}", file=sys.stderr)
        return 2
    endpoint = None if args.cluster else args.endpoint
    with Controller(endpoint, args.timeout, curve=curve, cluster=args.cluster) as ctl:
        try:
            reply = _request(ctl, args)
        except ControlError as e:
            print(f"rtseg prompt: {e}", file=sys.stderr)
            return 1
        except ControlTimeout as e:
            print(f"rtseg prompt: {e}", file=sys.stderr)
            return 3
        except _UsageError as e:
            print(e, file=sys.stderr)
            return 2
    reply.pop("v", None)
    print(json.dumps(reply, indent=2, default=str))
    return 0

"""`rtseg export RECORDING --to coco|davis|mp4 [--out PATH]`: a recording in formats other
tools read. RECORDING is a recording folder (recorder.directory) or one segment file; closed
segments and the complete records of a `.part` left by a crash are exported alike."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

DESCRIPTION = """\
Export a recording to COCO JSON, DAVIS palette PNGs, MP4 with the masks drawn, or an MCAP
file on Foxglove channels only.

examples:
  rtseg export recordings --to coco                  # -> recordings.coco.json, recordings.events.json
                                                     #    (+ _images/ if frames)
  rtseg export recordings --to davis --out davis/    # Annotations/<camera>/<frame>.png, JPEGImages/
  rtseg export recordings --to mp4 --camera demo     # -> recordings.mp4, masks over the frames
  rtseg export recordings/rtseg-20260101T120000_000000Z.mcap --to coco --out one.json
  rtseg export recordings --to foxglove               # -> recordings.foxglove.mcap (one file)

COCO: one image per processed frame (file_name only where its frame was recorded), one
annotation per visible object (RLE mask, bbox, area, track_id = object id, score, state); loads with
pycocotools. Beside it, EVENTS.events.json: the object events (appeared, occluded, reappeared,
lost, removed, entered_zone, left_zone). DAVIS: pixel = object id (palette PNG).
MP4 needs recorded frames (recorder.video raw/overlay with network.frame_topic.enabled);
without them the masks are drawn on black. Foxglove: /<camera>/image (CompressedImage),
/<camera>/masks (ImageAnnotations), /<camera>/events and /rtseg/status (JSON); segments the
recorder wrote with recorder.foxglove on already open in Foxglove as they are. Exit status: 0 done, 1 nothing to export or an error.
"""

DEFAULT_SUFFIX = {"coco": ".coco.json", "davis": ".davis", "mp4": ".mp4", "foxglove": ".foxglove.mcap"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = DESCRIPTION
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("recording", type=Path, help="recording folder or a .mcap / .mcap.part segment")
    parser.add_argument("--to", required=True, choices=["coco", "davis", "mp4", "foxglove"], help="output format")
    parser.add_argument("--out", type=Path, help="output file (coco, mp4) or folder (davis); "
                                                 "default: RECORDING + .coco.json / .davis / .mp4 / .foxglove.mcap")
    parser.add_argument("--camera", action="append", dest="cameras", help="export only this camera (repeatable)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def default_out(recording: Path, fmt: str) -> Path:
    base = recording.resolve()
    name = base.name.removesuffix(".part").removesuffix(".mcap")
    return base.with_name(name + DEFAULT_SUFFIX[fmt])


def main(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from rtseg.recording.exporters import export_coco, export_davis, export_foxglove, export_mp4
    from rtseg.recording.segment import RecordingError

    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    out = args.out or default_out(args.recording, args.to)
    bars: list[tqdm] = []  # made once the survey knows the total

    def on_total(n: int) -> None:
        bars.append(tqdm(total=n, desc=f"export {args.to}", unit="msg", disable=args.no_progress, file=sys.stderr))

    def progress(n: int) -> None:
        bars[0].update(n)

    def close_bar() -> None:
        for bar in bars:
            bar.close()

    kwargs = {"cameras": args.cameras, "progress": progress, "on_total": on_total}
    try:
        if args.to == "coco":
            r = export_coco(args.recording, out, **kwargs)
            summary = (f"{r['out']}: {r['images']} images, {r['annotations']} annotations, {r['jpegs']} JPEG frames; "
                       f"{r['events_out']}: {r['events']} events")
            if r["without_frame"]:
                print(f"note: {r['without_frame']} of {r['images']} images have no file_name: their frames were not "
                      "recorded (record frames with recorder.video raw or overlay and network.frame_topic.enabled; "
                      "the frame topic runs at network.frame_topic.fps, below the masks' rate)", file=sys.stderr)
        elif args.to == "davis":
            r = export_davis(args.recording, out, **kwargs)
            summary = f"{r['out']}: {r['pngs']} PNG masks of {r['objects']} object(s), {r['jpegs']} JPEG frames"
        elif args.to == "foxglove":
            r = export_foxglove(args.recording, out, **kwargs)
            summary = f"{r['out']}: " + ", ".join(f"{n} on {topic}" for topic, n in sorted(r["messages"].items()))
        else:
            notes: list[str] = []
            r = export_mp4(args.recording, out, notice=notes.append, **kwargs)
            close_bar()
            for note in notes:
                print(f"note: {note}", file=sys.stderr)
            summary = ", ".join(f"{path} ({r['frames'][cam]} frames{', masks on black' if cam in r['on_black'] else ''})"
                                for cam, path in r["videos"].items())
    except (RecordingError, OSError) as e:
        close_bar()
        print(f"error: {e}", file=sys.stderr)
        return 1
    close_bar()
    print(f"exported {summary}")
    return 0

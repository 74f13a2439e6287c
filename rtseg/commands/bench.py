"""`rtseg bench`: the streaming engine against sam2's official video predictor on the same
frames (rtseg.engine.bench does the measuring)."""
from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import tempfile
from pathlib import Path

import torch

from rtseg.commands import setup_logging
from rtseg.engine import holes
from rtseg.engine.bench import RunResult, bench_model, format_table, machine_info, write_clip
from rtseg.engine.build import DeviceError, resolve_device
from rtseg.engine.models import ModelSpec, model_spec
from rtseg.engine.precision import CHOICES as PRECISIONS
from rtseg.engine.precision import PrecisionError, choose_precision
from rtseg.engine.step import COMPILE_MODES

log = logging.getLogger("rtseg.bench")


def _source_size(text: str) -> tuple[int, int]:
    w, sep, h = text.lower().partition("x")
    if not sep or not w.isdigit() or not h.isdigit() or int(w) < 16 or int(h) < 16:
        raise argparse.ArgumentTypeError(
            f"--source-size {text!r}: expected WIDTHxHEIGHT, at least 16x16, e.g. 1280x720")
    return int(w), int(h)


def _counts(option: str):
    def parse(text: str) -> list[int]:
        try:
            counts = [int(x) for x in text.split(",") if x.strip()]
        except ValueError:
            counts = []
        if not counts or min(counts) < 1:
            raise argparse.ArgumentTypeError(f"{option} {text!r}: expected comma-separated counts >= 1, e.g. 1,4")
        return counts

    return parse


def _device(text: str) -> str:
    if text not in ("cpu", "cuda", "auto") and not (text.startswith("cuda:") and text[5:].isdigit()):
        raise argparse.ArgumentTypeError(f"--device {text!r}: expected cpu, auto, cuda or cuda:N")
    return text


def _model_names(text: str) -> list[ModelSpec]:
    try:
        return [model_spec(x.strip()) for x in text.split(",") if x.strip()]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"--models {text!r}: {e}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", type=_model_names, default=[model_spec("sam2.1_hiera_t")],
                        help="comma-separated model names (default: sam2.1_hiera_t)")
    parser.add_argument("--objects", type=_counts("--objects"), default=[1, 4], help="object counts (default: 1,4)")
    parser.add_argument("--cameras", type=_counts("--cameras"), default=[1],
                        help="camera counts: streams run side by side, rtseg's through one image-encoder "
                             "batch (default: 1)")
    parser.add_argument("--compile", choices=COMPILE_MODES, default="off", nargs="?", const="default",
                        help="compile rtseg's per-frame step: off | default | graphs (CUDA graphs); "
                             "--compile alone means default (default: off)")
    parser.add_argument("--chunk", type=int, default=None,
                        help="rtseg: objects per batch of the step (default: as `rtseg run` chooses it, "
                             "all in one batch on a GPU, one at a time on the CPU)")
    parser.add_argument("--encoder-batch", type=int, default=None,
                        help="rtseg with --cameras: frames per image-encoder pass (default: as `rtseg run` chooses "
                             "it, all cameras in one pass on a GPU, one at a time on the CPU)")
    parser.add_argument("--device", type=_device, default="cpu", help="cpu, auto, cuda or cuda:N (default: cpu)")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="as engine.precision in a config (default: auto: bf16 on GPUs with native bf16, "
                             "fp32 on the CPU)")
    parser.add_argument("--image-size", type=int, default=None, help="model input size (default: the model's 1024)")
    parser.add_argument("--frames", type=int, default=20, help="frames per run, including frame 0 (default: 20)")
    parser.add_argument("--warmup", type=int, default=2, help="tracked frames left out of the statistics (default: 2)")
    parser.add_argument("--source-size", type=_source_size, default=(1280, 720), help="clip size (default: 1280x720)")
    parser.add_argument("--checkpoint-dir", type=Path, default=Path("checkpoints"),
                        help="official checkpoints here are used when present, else random weights "
                             "(default: checkpoints)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic clip (default: 0)")
    parser.add_argument("--interleave", action="store_true",
                        help="alternate the two predictors frame by frame, so that other load on the machine "
                             "slows both alike (peak memory is then not measured)")
    parser.add_argument("--json", type=Path, default=None, help="also write every run's numbers here")


def main(args: argparse.Namespace) -> int:
    setup_logging()
    if args.warmup < 0 or args.frames < args.warmup + 2:
        log.error("--frames %d with --warmup %d leaves no frame to time: need frames >= warmup + 2",
                  args.frames, args.warmup)
        return 2
    for option, value in (("--chunk", args.chunk), ("--encoder-batch", args.encoder_batch)):
        if value is not None and value < 1:
            log.error("%s %d: must be at least 1 (or left out: the device's choice)", option, value)
            return 2
    if args.image_size is not None and (args.image_size < 64 or args.image_size % 16):
        log.error("--image-size %d: must be a multiple of 16, at least 64 (default: the model's 1024)", args.image_size)
        return 2
    try:
        device = resolve_device(args.device)
        if device.type == "cuda":  # as the segmenter does: sam2's caches on this GPU, not GPU 0
            torch.cuda.set_device(device)
        precision = choose_precision(args.precision, device)
    except (DeviceError, PrecisionError) as e:
        log.error("%s", e)
        return 2
    results: list[RunResult] = []
    start_info = {**machine_info(device), "precision": precision.name,
                  "hole_filling": holes.backend(device)}
    with tempfile.TemporaryDirectory(prefix="rtseg-bench-") as tmp:
        clip_dir, ckpt_dir = Path(tmp, "clip"), Path(tmp, "ckpt")
        clip_dir.mkdir()
        ckpt_dir.mkdir()
        try:
            clip = write_clip(clip_dir, args.frames, args.source_size, max(args.objects), args.seed)
        except ValueError as e:
            log.error("%s", e)
            return 2
        warm = clip.head(2, Path(tmp, "warm-up"))
        for spec in args.models:
            results += bench_model(spec, args, clip, warm, device, ckpt_dir, precision)
            gc.collect()  # this model's predictors go before the next model's are built
            if device.type == "cuda":
                torch.cuda.empty_cache()
    load = os.getloadavg()
    print()
    print(f"{start_info['date']}, {start_info.get('gpu', start_info['cpu'])}, {start_info['cpu_count']} CPUs, "
          f"load average {start_info['loadavg_1_5_15'][0]:.2f} at start, {load[0]:.2f} at end")
    mode = (", interleaved" if args.interleave else "") + f", rtseg compile {args.compile}"
    print(f"{device}{mode}, {precision.name}, source {args.source_size[0]}x{args.source_size[1]}, image_size "
          f"{results[0].image_size}, {args.frames} frames ({args.warmup} warm-up), "
          f"peak mem: {results[0].peak_mem_kind}")
    print(format_table(results))
    if args.json:
        report = {"machine": {**start_info, "loadavg_1_5_15_end": load}, "results": [r.as_dict() for r in results]}
        args.json.write_text(json.dumps(report, indent=2))
        log.info("wrote %s", args.json)
    return 0

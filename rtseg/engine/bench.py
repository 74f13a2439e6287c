"""`rtseg bench`: rtseg's StreamingPredictor against sam2's official SAM2VideoPredictor.

Both run in this process, on the same frames (a synthetic clip of moving shapes, written
once as JPEGs: the official predictor loads that folder, rtseg is fed the same decoded
images), with the same weights, per model size and object count. Every object is prompted
with a box at frame 0. Reported per run:

- first mask: from the start to the masks of frame 0. The official predictor must first
  load the whole clip (`init_state`, also reported on its own); rtseg tracks frame 0 and
  takes the prompts.
- per-frame latency of frames 1.. after `--warmup` frames. Both predictors do the same work
  in it: they start from the decoded frame on the host (HxWx3 uint8 RGB; decoding the JPEG is
  not timed) and end with every object's boolean mask at source resolution on the host.
  rtseg: `track()` (upload, resize, normalise, the batched step, masks, boxes, scores, one
  host copy), or `track_cameras` for several cameras (`--encoder-batch` frames per image-encoder
  pass; default: as `rtseg run` chooses, all on a GPU, one at a time on the CPU). The official
  predictor: sam2's own loader steps for that frame (PIL resize, /255, upload, normalise, as
  `init_state` does them) written into its state, the next yield of `propagate_in_video`,
  then `logits > 0` copied to the host. With `--cameras K` both run K streams (official: K
  inference states) and a step covers one frame of each. FPS is frames (of all cameras) over
  the sum of those latencies.
- peak memory growth over the loaded models: CUDA `max_memory_allocated`; on the CPU the
  process RSS sampled every 10 ms (a lower bound on the true peak, and the allocator may
  reuse memory freed by an earlier run). Not measured with `--interleave`, which alternates
  the predictors frame by frame so that other load on a shared machine slows both alike.
- state bytes at the end: rtseg's `state_nbytes()`, and the same tensors (mask memories,
  mask logits, object pointers, object scores) in the official inference state, which
  also holds the whole preprocessed clip ("video bytes").

Timings use real checkpoints from --checkpoint-dir when present, else random weights whose
object-score head says "present" (so both predictors do the work of real objects; the masks
themselves are meaningless). Both run with the precision production uses (`--precision`,
default auto: bf16 on GPUs with native bf16, fp32 on the CPU), under one autocast context
held for the whole run, as the segmenter holds one for its loop, and both fill mask holes
the same way (rtseg.engine.holes; sam2's extension where it loads).
"""
from __future__ import annotations

import dataclasses
import datetime
import gc
import importlib.metadata
import logging
import os
import platform
import shutil
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import psutil
import torch
from PIL import Image

from rtseg.engine import holes
from rtseg.engine.build import build_sam2_video_model
from rtseg.engine.cameras import track_cameras
from rtseg.engine.models import ModelSpec
from rtseg.engine.precision import Precision
from rtseg.engine.predictor import StreamingPredictor
from rtseg.sources.synthetic import SyntheticScene

log = logging.getLogger(__name__)

STATE_KEYS = ("maskmem_features", "pred_masks", "obj_ptr", "object_score_logits")  # what state_nbytes counts
MIB = 1 << 20


@dataclasses.dataclass
class RunResult:
    model: str
    objects: int
    cameras: int
    predictor: str  # "rtseg" | "official"
    device: str
    image_size: int
    frames: int
    warmup: int
    weights: str
    first_mask_s: float
    init_state_s: float | None  # official only
    latencies_ms: list[float] = dataclasses.field(repr=False)
    peak_mem_bytes: int | None  # None: not measured (interleaved runs)
    peak_mem_kind: str
    state_bytes_after_prompt: int
    state_bytes: int
    video_bytes: int  # official: the preprocessed clip init_state holds; rtseg: 0
    interleaved: bool = False  # frame by frame with the other predictor: latencies pair up

    @property
    def fps(self) -> float:
        return 1000.0 * self.cameras * len(self.latencies_ms) / sum(self.latencies_ms)

    @property
    def p50_ms(self) -> float:
        return float(np.percentile(self.latencies_ms, 50))

    @property
    def p99_ms(self) -> float:
        return float(np.percentile(self.latencies_ms, 99))

    def as_dict(self) -> dict:
        return {**dataclasses.asdict(self), "fps": self.fps, "p50_ms": self.p50_ms, "p99_ms": self.p99_ms}


# ---------------------------------------------------------------- measurement
class Clock:
    """perf_counter that first waits for the GPU, so a time covers the work queued before it."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"

    def __call__(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()


class PeakMemory:
    """Peak memory growth inside a `with` block: CUDA allocator peak, or sampled process RSS."""

    def __init__(self, device: torch.device, interval_s: float = 0.01):
        self.cuda = device.type == "cuda"
        self.kind = "cuda max_memory_allocated growth" if self.cuda else "rss growth, sampled every 10 ms"
        self.interval_s = interval_s
        self.peak_bytes = 0

    def __enter__(self) -> PeakMemory:
        gc.collect()
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            self._base = torch.cuda.memory_allocated()
        else:
            self._proc = psutil.Process()
            self._base = self._max = self._proc.memory_info().rss
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._sample, name="bench-rss", daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._max = max(self._max, self._proc.memory_info().rss)

    def __exit__(self, *exc) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated()
        else:
            self._stop.set()
            self._thread.join()
            peak = max(self._max, self._proc.memory_info().rss)
        self.peak_bytes = max(0, peak - self._base)


def _official_state_nbytes(state: dict) -> int:
    """Bytes of the official inference state's per-object memory (the tensors state_nbytes counts)."""
    seen, total = set(), 0
    for key in ("output_dict_per_obj", "temp_output_dict_per_obj"):
        for obj in state[key].values():
            for outputs in obj.values():
                for out in outputs.values():
                    for name in STATE_KEYS:
                        t = out.get(name)
                        if isinstance(t, torch.Tensor) and t.data_ptr() not in seen:
                            seen.add(t.data_ptr())
                            total += t.numel() * t.element_size()
    return total


def _host_masks(logits: torch.Tensor) -> np.ndarray:
    """What rtseg's track() hands over: every object's boolean mask, on the host."""
    return (logits > 0).cpu().numpy()


# ----------------------------------------------------------------------- clip
@dataclasses.dataclass
class Clip:
    folder: Path  # 0.jpg, 1.jpg, ... as sam2's init_state wants them
    frames: int
    boxes: dict[int, list[float]]  # obj_id -> xyxy box at frame 0 (source pixels)

    def frame(self, i: int) -> np.ndarray:
        return cv2.cvtColor(cv2.imread(str(self.folder / f"{i}.jpg")), cv2.COLOR_BGR2RGB)

    def head(self, n: int, folder: Path) -> Clip:
        """The first n frames, in a folder of their own (init_state loads a whole folder)."""
        folder.mkdir()
        for i in range(n):
            shutil.copyfile(self.folder / f"{i}.jpg", folder / f"{i}.jpg")
        return Clip(folder, n, self.boxes)


def write_clip(folder: Path, frames: int, size: tuple[int, int], objects: int, seed: int) -> Clip:
    scene = SyntheticScene(size[0], size[1], objects=objects, seed=seed)
    boxes = {}
    for i in range(frames):
        image, masks = scene.render(i)
        cv2.imwrite(str(folder / f"{i}.jpg"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        if i == 0:
            for obj_id, mask in masks.items():
                ys, xs = np.nonzero(mask)
                if xs.size == 0:
                    raise ValueError(f"object {obj_id} of the synthetic clip is hidden at frame 0 (seed {seed}); "
                                     "pick another --seed")
                boxes[obj_id] = [float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())]
    return Clip(folder, frames, boxes)


def write_forced_checkpoint(spec: ModelSpec, path: Path, image_size: int | None, seed: int = 0) -> Path:
    """Random weights, official format, with the object-score head forced to 'present'."""
    torch.manual_seed(seed)
    model = build_sam2_video_model(spec, None, torch.device("cpu"), image_size)
    with torch.no_grad():
        model.sam_mask_decoder.pred_obj_score_head.layers[-1].bias.fill_(20.0)
    torch.save({"model": model.state_dict()}, path)
    return path


# ----------------------------------------------------------------------- runs
class RtsegRun:
    """rtseg, one predictor per camera: `start()` tracks frame 0 and prompts, `step(i)` tracks frame i."""

    name = "rtseg"

    def __init__(self, preds: list[StreamingPredictor], clip: Clip, objects: int, device: torch.device,
                 encoder_batch: int | None = None):
        self.preds, self.clip, self.objects, self.clock = preds, clip, objects, Clock(device)
        self.encoder_batch = encoder_batch  # frames per image-encoder pass (None: the device's choice)
        self.latencies_ms: list[float] = []

    def _track(self, frame: np.ndarray) -> None:
        if len(self.preds) == 1:
            self.preds[0].track(frame)
        else:
            track_cameras([(pred, frame) for pred in self.preds], encoder_batch=self.encoder_batch)

    def start(self) -> None:
        for pred in self.preds:
            pred.reset()
        start = self.clock()
        self._track(self.clip.frame(0))
        for pred in self.preds:
            for obj_id in range(1, self.objects + 1):
                pred.add_prompt(obj_id, box=self.clip.boxes[obj_id])
        self.first_mask_s = self.clock() - start
        self.after_prompt = sum(pred.state_nbytes() for pred in self.preds)

    def step(self, i: int) -> None:
        frame = self.clip.frame(i)  # decoding is not the predictor's work
        t0 = self.clock()
        self._track(frame)
        self.latencies_ms.append(1000 * (self.clock() - t0))

    def finish(self) -> dict:
        state = sum(pred.state_nbytes() for pred in self.preds)
        for pred in self.preds:
            pred.reset()
        return dict(first_mask_s=self.first_mask_s, init_state_s=None, latencies_ms=self.latencies_ms,
                    state_bytes_after_prompt=self.after_prompt, state_bytes=state, video_bytes=0)


class OfficialRun:
    """sam2's SAM2VideoPredictor, one inference state per camera: `start()` loads the clip, prompts
    and yields frame 0; `step` the next frame of every camera."""

    name = "official"

    def __init__(self, official, clip: Clip, objects: int, device: torch.device, cameras: int = 1):
        self.official, self.clip, self.objects, self.clock = official, clip, objects, Clock(device)
        self.cameras = cameras
        self.latencies_ms: list[float] = []

    def start(self) -> None:
        start = self.clock()
        self.states = [self.official.init_state(str(self.clip.folder)) for _ in range(self.cameras)]
        self.init_state_s = self.clock() - start
        dev = self.states[0]["images"].device
        self._mean = torch.tensor((0.485, 0.456, 0.406), device=dev)[:, None, None]  # init_state's defaults
        self._std = torch.tensor((0.229, 0.224, 0.225), device=dev)[:, None, None]
        for state in self.states:
            for obj_id in range(1, self.objects + 1):
                self.official.add_new_points_or_box(state, frame_idx=0, obj_id=obj_id, box=self.clip.boxes[obj_id])
        self.after_prompt = sum(_official_state_nbytes(state) for state in self.states)
        self.frames = [self.official.propagate_in_video(state) for state in self.states]
        for frames in self.frames:
            _host_masks(next(frames)[2])  # frame 0: the prompted masks, after encoding their memory
        self.first_mask_s = self.clock() - start

    def step(self, i: int) -> None:
        frame = self.clip.frame(i)  # decoding is not the predictor's work
        t0 = self.clock()
        for state, frames in zip(self.states, self.frames):
            with torch.inference_mode():  # init_state made the images under inference mode
                state["images"][i] = self._load(frame, state)  # the frame as init_state would have loaded it
            frame_idx, _, logits = next(frames)
            _host_masks(logits)
            assert frame_idx == i, f"official predictor yielded frame {frame_idx}, expected {i}"
        self.latencies_ms.append(1000 * (self.clock() - t0))

    def _load(self, frame: np.ndarray, state: dict) -> torch.Tensor:
        """sam2.utils.misc's loading of one frame, from the decoded image: PIL resize, /255, normalise."""
        size = self.official.image_size
        img = torch.from_numpy(np.array(Image.fromarray(frame).resize((size, size))) / 255.0).permute(2, 0, 1)
        img = img.float().to(state["images"].device, non_blocking=True)
        return (img - self._mean) / self._std

    def finish(self) -> dict:
        for frames in self.frames:
            frames.close()
        result = dict(first_mask_s=self.first_mask_s, init_state_s=self.init_state_s, latencies_ms=self.latencies_ms,
                      state_bytes_after_prompt=self.after_prompt,
                      state_bytes=sum(_official_state_nbytes(state) for state in self.states),
                      video_bytes=sum(_tensor_nbytes(state["images"]) for state in self.states))
        del self.states, self.frames
        return result


def measure(runs: list, frames: int, device: torch.device, interleave: bool, precision: Precision) -> list[dict]:
    """Run each of `runs` over frames 0..frames-1: one after the other, each with its own peak
    memory, or interleaved frame by frame (background load then hits both alike; no memory peak).
    One autocast context per run, as the segmenter holds one for its loop."""
    if interleave:
        with precision.autocast():
            for run in runs:
                run.start()
            for i in range(1, frames):
                for run in runs if i % 2 else runs[::-1]:  # alternate who goes first: no order effect
                    run.step(i)
            return [dict(run.finish(), peak_mem_bytes=None, peak_mem_kind="not measured (interleaved)")
                    for run in runs]
    results = []
    for run in runs:
        with PeakMemory(device) as mem, precision.autocast():
            run.start()
            for i in range(1, frames):
                run.step(i)
        results.append(dict(run.finish(), peak_mem_bytes=mem.peak_bytes, peak_mem_kind=mem.kind))
    return results


def _tensor_nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def default_chunk(chunk: int | None, device: torch.device) -> int | None:
    """--chunk, or what `rtseg run` uses when engine.object_chunk is unset (one place for the
    rule: rtseg.engine.predictor.auto_chunk)."""
    from rtseg.engine.predictor import auto_chunk

    return chunk if chunk is not None else auto_chunk(device)


def bench_model(spec: ModelSpec, args, clip: Clip, warm: Clip, device: torch.device,
                ckpt_tmp: Path, precision: Precision) -> list[RunResult]:
    from sam2.build_sam import build_sam2_video_predictor

    ckpt = args.checkpoint_dir / spec.checkpoint_file
    if ckpt.is_file():
        weights = str(ckpt)
    else:
        log.warning("%s not found: timing %s with random weights (object head forced 'present'); "
                    "masks are meaningless, the work is the same", ckpt, spec.name)
        ckpt = write_forced_checkpoint(spec, ckpt_tmp / spec.checkpoint_file, args.image_size)
        weights = "random (object head forced present)"
    model = build_sam2_video_model(spec, ckpt, device, args.image_size)
    overrides = [f"++model.image_size={args.image_size}"] if args.image_size else []
    official = build_sam2_video_predictor(spec.hydra_config, ckpt_path=str(ckpt), device=str(device),
                                          hydra_overrides_extra=overrides)
    assert official.fill_hole_area == model.fill_hole_area  # the same post-processing (holes.py)

    def runs(clip_: Clip, objects: int, cameras: int) -> list:
        # capacity = the object count: the step does no padding work
        preds = [StreamingPredictor(model, objects=objects, compile=args.compile, precision=precision,
                                    chunk=default_chunk(args.chunk, device)) for _ in range(cameras)]
        return [RtsegRun(preds, clip_, objects, device, args.encoder_batch),
                OfficialRun(official, clip_, objects, device, cameras)]

    with holes.official_predictor_fills_everywhere():
        # One untimed pass first: the first forward passes of a process pay one-off costs (kernel
        # selection, allocator growth) that would otherwise count against whichever runs first.
        measure(runs(warm, 1, 1), warm.frames, device, args.interleave, precision)
        results = []
        for k in args.cameras:
            for n in args.objects:
                log.info("bench %s, %d camera(s) x %d object(s), %d frames%s", spec.name, k, n, clip.frames,
                         ", interleaved" if args.interleave else "")
                timed = runs(clip, n, k)
                for run, numbers in zip(timed, measure(timed, clip.frames, device, args.interleave, precision)):
                    numbers["latencies_ms"] = numbers["latencies_ms"][args.warmup:]
                    results.append(RunResult(model=spec.name, objects=n, cameras=k, predictor=run.name,
                                             interleaved=args.interleave,
                                             device=str(device), image_size=int(model.image_size),
                                             frames=clip.frames, warmup=args.warmup, weights=weights, **numbers))
                    print(format_table(results[-1:], header=False), flush=True)
    return results


# ---------------------------------------------------------------------- output
COLUMNS = ("model", "cams", "obj", "predictor", "init_state s", "first mask s", "FPS", "x official", "paired x (95% CI)",
           "p50 ms", "p99 ms", "peak mem MiB", "state MiB", "video MiB")


def paired_speedup(rtseg: RunResult, official: RunResult) -> tuple[float, float, float] | None:
    """Interleaved runs: the geometric mean of official/rtseg latency over paired frames, with a
    95% confidence interval (t distribution of the log ratios, frames taken as independent);
    None when the runs do not pair. Close to, but not the same number as, the FPS ratio (a ratio
    of total times)."""
    a, b = np.asarray(rtseg.latencies_ms), np.asarray(official.latencies_ms)
    if not (rtseg.interleaved and official.interleaved) or len(a) != len(b) or len(a) < 3:
        return None
    logs = np.log(b / a)
    half = _t975(len(logs) - 1) * logs.std(ddof=1) / np.sqrt(len(logs))
    return float(np.exp(logs.mean())), float(np.exp(logs.mean() - half)), float(np.exp(logs.mean() + half))


# Student's t, two-sided 95%, for 1..30 degrees of freedom (beyond: the normal quantile with two
# Cornish-Fisher terms, within 0.01% of t there)
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def _t975(df: int) -> float:
    z = 1.959964
    if df <= len(_T975):
        return _T975[df - 1]
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def format_table(results: list[RunResult], header: bool = True) -> str:
    rows = [COLUMNS] if header else []
    official = {(r.model, r.cameras, r.objects): r for r in results if r.predictor == "official"}
    for r in results:
        base = official.get((r.model, r.cameras, r.objects))
        paired = paired_speedup(r, base) if base is not None and r is not base else None
        rows.append((r.model, str(r.cameras), str(r.objects), r.predictor,
                     "-" if r.init_state_s is None else f"{r.init_state_s:.2f}", f"{r.first_mask_s:.2f}",
                     f"{r.fps:.2f}", "-" if base is None else f"{r.fps / base.fps:.2f}",
                     "-" if paired is None else f"{paired[0]:.2f} ({paired[1]:.2f}-{paired[2]:.2f})",
                     f"{r.p50_ms:.0f}",
                     f"{r.p99_ms:.0f}",
                     "-" if r.peak_mem_bytes is None else f"{r.peak_mem_bytes / MIB:.0f}",
                     f"{r.state_bytes / MIB:.2f}", f"{r.video_bytes / MIB:.0f}" if r.video_bytes else "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        lines.append("  ".join(c.ljust(w) if i in (0, 3) else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
    return "\n".join(lines)


def machine_info(device: torch.device) -> dict:
    info = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "sam2": importlib.metadata.version("sam2"), "loadavg_1_5_15": os.getloadavg()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    return info

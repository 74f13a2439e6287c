"""The segmenter process: frames from the rings -> StreamingPredictor -> masks on ZeroMQ.

One model, one StreamingPredictor state per camera. Each loop turn takes a frame per camera
by the frame policy (`latest`: the newest, skipped frames counted; `every`: the next, none
skipped), tracks it, publishes `masks.<camera>` (and `frame.<camera>` when enabled), and
between frames answers the control socket: prompts are applied here, in this thread, never
concurrently with tracking. `status` goes out every `network.status_interval_s` from a thread
beside the loop (rtseg.pipeline.pulse), on time however long a frame takes; a stop request
abandons the frame in progress.

A prompt names the capture frame the user clicked on; it is applied to that frame while the
engine still holds it (`segmenter.recent_frames`), otherwise to the latest frame, and the
reply says which. Applied prompts go to the prompt log first, so a restarted segmenter
re-creates every object (from its most recent prompt) on its first frame per camera.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from rtseg.config import Config
from rtseg.pipeline.control import (ControlServer, ErrorCode, RequestError, ValidatedRequest, check_frame_index,
                                    prompt_reply, status_reply)
from rtseg.engine import PromptError, StreamingPredictor
from rtseg.engine.cameras import track_cameras
from rtseg.pipeline.auto_prompt import ADDED, KeyframeSearch, match_boxes, select_new
from rtseg.pipeline.prompt_log import PromptLog
from rtseg.pipeline.reporter import ObjectReporter
from rtseg.proc import EXIT_FATAL, EXIT_OK, RunState, exit_now, setup_child_logging, stop_on_sigterm
from rtseg.protocol import CameraStatus, MasksMessage, PromptEvent, StatusMessage, decode_rle, encode_rle
from rtseg.pipeline.publisher import Publisher
from rtseg.pipeline.pulse import Abandon, Pulse

log = logging.getLogger("rtseg.pipeline.segmenter")

LATENCY_WINDOW = 300  # frames in the p50/p99 window of the status message
CAPTURE_SILENT_S = 2.0  # a capture process beats every 0.2 s; this long without a beat: `lost`


@dataclass
class CameraPipeline:
    camera: str
    reader: Any  # rtseg.ring.RingReader
    predictor: StreamingPredictor
    reporter: ObjectReporter
    engine_index: OrderedDict[int, int] = field(default_factory=OrderedDict)  # capture index -> engine index
    latest_frame: Any = None  # the newest tracked rtseg.sources.Frame
    restore: list = field(default_factory=list)  # logged prompts to re-apply on the first frame
    frames: int = 0
    skipped_total: int = 0
    latencies_ms: deque = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))
    frame_times: deque = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))
    keyframes: KeyframeSearch | None = None  # auto_prompt.mode everything
    boxes: dict[int, tuple] = field(default_factory=dict)  # obj id -> published box of the latest frame
    masks: Any = None  # the latest frame's raw masks (N, H, W), for auto prompts to avoid
    highest_id: int = 0  # the highest object id this camera has had (auto prompts count up from it)
    was_connected: bool = False  # the camera delivered once: a restarted capture is `lost` until it is back
    # .value: the last frame index published for this camera, shared with a restarted segmenter
    published: Any = field(default_factory=lambda: SimpleNamespace(value=-1))

    def fps(self) -> float:
        times = tuple(self.frame_times)  # a snapshot: the status thread reads beside the loop
        if len(times) < 2:
            return 0.0
        span = times[-1] - times[0]
        return (len(times) - 1) / span if span > 0 else 0.0

    def capture_to_engine(self, capture_index: int | None) -> int | None:
        """The engine frame of a capture frame the engine still holds; None: use the latest."""
        idx = None if capture_index is None else self.engine_index.get(int(capture_index))
        return idx if idx is not None and idx in self.predictor.held_frames else None


def percentile(values, q: float) -> float:
    return float(np.percentile(np.fromiter(values, float), q)) if values else 0.0


class Segmenter:
    """Everything the segmenter process does, callable step by step (tests drive it directly)."""

    def __init__(self, cfg: Config, predictors: dict[str, StreamingPredictor], readers: dict[str, Any],
                 prompt_log: PromptLog, publisher: Any, device_name: str = "cpu",
                 state_readers: dict[str, Any] | None = None, published: dict[str, Any] | None = None) -> None:
        self.cfg = cfg
        self.publisher = publisher
        self.prompt_log = prompt_log
        self.device_name = device_name
        cam_cfgs = {c.id: c for c in cfg.cameras}
        self.cams: dict[str, CameraPipeline] = {
            cam: CameraPipeline(cam, readers[cam], predictors[cam], ObjectReporter(cam_cfgs[cam]),
                                restore=prompt_log.latest_prompts(cam))
            for cam in predictors
        }
        for cam, pipe in self.cams.items():
            if cam_cfgs[cam].auto_prompt.mode == "everything":
                pipe.keyframes = KeyframeSearch(pipe.predictor.model, cam_cfgs[cam].auto_prompt, cam)
        for cam, last in (published or {}).items():  # rtseg.proc.RunState.published
            self.cams[cam].published = last
        # the capture states for `status`, read beside the loop: readers of their own
        self.state_readers = state_readers or readers
        self._status_lock = threading.Lock()
        self._published_states: dict[str, str] = {}  # camera -> source_state in the last published status
        self._started = time.monotonic()

    # --------------------------------------------------------------- frames
    def _read(self, pipe: CameraPipeline, timeout_s: float):
        if self.cfg.segmenter.frame_policy == "every":
            return pipe.reader.next(timeout_s)
        return pipe.reader.latest(timeout_s)

    def step(self, timeout_s: float = 0.05) -> int:
        """Track at most one new frame per camera; returns how many frames were processed."""
        if self.cfg.segmenter.batch_cameras:
            return self._step_batched(timeout_s)
        done = 0
        per_cam_timeout = timeout_s / max(1, len(self.cams))
        for pipe in self.cams.values():
            rf = self._read(pipe, per_cam_timeout)
            if rf is None or rf.frame.index <= pipe.published.value:  # none, or published before a restart
                continue
            pipe.published.value = rf.frame.index  # first: a kill now leaves a gap, never a repeat
            t0 = time.monotonic_ns()
            self._publish(pipe, rf, pipe.predictor.track(rf.frame.image), t0)
            done += 1
        return done

    def _step_batched(self, timeout_s: float) -> int:
        """segmenter.batch_cameras: the cameras with a frame ready go through the image encoder
        together (`camera_batch` at a time); a late camera is waited for at most batch_wait_s."""
        seg = self.cfg.segmenter
        ready = self._ready_frames(0.0)
        if not ready:  # nothing yet: wait as the unbatched loop does, until one camera has a frame
            for name, pipe in self.cams.items():
                if (rf := self._read(pipe, timeout_s / max(1, len(self.cams)))) is not None:
                    ready = {name: rf, **self._ready_frames(0.0, skip=(name,))}
                    break
        if ready and seg.batch_wait_s > 0 and len(ready) < len(self.cams):
            ready.update(self._ready_frames(seg.batch_wait_s, skip=ready))
        batch = [(self.cams[name], rf) for name, rf in ready.items()
                 if rf.frame.index > self.cams[name].published.value]  # not published before a restart
        for pipe, rf in batch:
            pipe.published.value = rf.frame.index  # first: a kill now leaves a gap, never a repeat
        size = camera_batch(self.cfg, self.device_name)
        for i in range(0, len(batch), size):
            chunk = batch[i:i + size]
            t0 = time.monotonic_ns()
            results = track_cameras([(pipe.predictor, rf.frame.image) for pipe, rf in chunk], encoder_batch=size)
            for (pipe, rf), result in zip(chunk, results):
                self._publish(pipe, rf, result, t0)
        return len(batch)

    def _ready_frames(self, wait_s: float, skip=()) -> dict:
        """A frame from every camera not in `skip` that has one within wait_s (all cameras together)."""
        deadline = time.monotonic() + wait_s
        frames = {}
        for name, pipe in self.cams.items():
            if name not in skip and (rf := self._read(pipe, max(0.0, deadline - time.monotonic()))) is not None:
                frames[name] = rf
        return frames

    def _publish(self, pipe: CameraPipeline, rf, result, t0: int) -> None:
        """Bookkeeping and the masks (and frame) messages of a tracked frame (tracking began at t0)."""
        frame = rf.frame
        pipe.engine_index[frame.index] = result.frame_index
        while len(pipe.engine_index) > pipe.predictor.window.history:
            pipe.engine_index.popitem(last=False)
        pipe.latest_frame = frame
        if pipe.restore:
            result = self._restore_objects(pipe) or result
        t1 = time.monotonic_ns()
        pipe.frames += 1
        pipe.skipped_total += rf.missed
        report = pipe.reporter.process(frame.index, frame.t_mono_ns, frame.t_wall_ns, result.obj_ids, result.masks,
                                       result.object_scores, result.boxes)
        t2 = time.monotonic_ns()
        latency = {"wait": (t0 - frame.t_mono_ns) / 1e6, "track": (t1 - t0) / 1e6, "report": (t2 - t1) / 1e6}
        msg = MasksMessage.from_arrays(
            pipe.camera, frame.index, obj_ids=result.obj_ids, masks=report.masks, scores=result.object_scores,
            boxes=report.boxes, capture_ns=frame.t_mono_ns, capture_wall_ns=frame.t_wall_ns, processed_ns=t1,
            latency_ms=latency, skipped_total=pipe.skipped_total, skipped_since_last=rf.missed, states=report.states)
        latency["encode"] = (time.monotonic_ns() - t2) / 1e6  # RLE encoding, done by from_arrays
        self.publisher.publish(dataclasses.replace(msg, latency_ms=latency))
        self._publish_all(report.events)
        pipe.boxes = {i: tuple(b) for i, b in zip(result.obj_ids, report.boxes.tolist(), strict=True)}
        pipe.masks = result.masks
        if pipe.keyframes is not None:
            self._everything(pipe, frame)
        for obj_id in pipe.reporter.expired():
            log.info("camera %s: object %d lost for over %s s: removing it", pipe.camera, obj_id,
                     pipe.reporter.cfg.lifecycle.remove_after_s)
            self.remove(pipe.camera, obj_id)
            self.publisher.publish(PromptEvent(pipe.camera, "remove", obj_id, None, None, {},
                                               tuple(pipe.predictor.obj_ids), time.time_ns()))
        pipe.latencies_ms.append((time.monotonic_ns() - frame.t_mono_ns) / 1e6)
        pipe.frame_times.append(time.monotonic())
        self.publisher.publish_frame(pipe.camera, frame.index, frame.image, capture_ns=frame.t_mono_ns,
                                     capture_wall_ns=frame.t_wall_ns)

    # ---------------------------------------------------------- auto prompts
    def _next_id(self, pipe: CameraPipeline) -> int:
        pipe.highest_id = max([pipe.highest_id, *pipe.predictor.obj_ids]) + 1
        return pipe.highest_id

    def _everything(self, pipe: CameraPipeline, frame) -> None:
        """auto_prompt.mode everything: start a keyframe search when due, add what a finished one found."""
        assert pipe.keyframes is not None
        cfg = pipe.reporter.cfg.auto_prompt
        try:
            found = pipe.keyframes.poll()
        except Exception:  # tracking goes on; the next keyframe tries again
            log.exception("camera %s: the keyframe search failed", pipe.camera)
            found = None
        if found is not None:
            room = cfg.max_objects - len(pipe.predictor.obj_ids)
            new = select_new(found.candidates, [*found.tracked, *pipe.masks], cfg, room)
            engine_t = pipe.capture_to_engine(found.frame_index)
            for mask in new:
                obj_id = self._next_id(pipe)
                result = pipe.predictor.add_prompt(obj_id, mask=mask, frame_index=engine_t)
                payload = {"mask": encode_rle(mask)}
                self.prompt_log.add(pipe.camera, obj_id, "mask", payload)
                applied = next(c for c, e in pipe.engine_index.items() if e == result.frame_index)
                self.publisher.publish(PromptEvent(pipe.camera, "add_mask", obj_id, applied, found.frame_index,
                                                   payload, tuple(pipe.predictor.obj_ids), time.time_ns()))
            log.info("camera %s: keyframe %d searched in %.2f s: %d mask(s), %d new object(s) %s", pipe.camera,
                     found.frame_index, found.seconds, len(found.candidates), len(new),
                     pipe.predictor.obj_ids[-len(new):] if new else [])
        if len(pipe.predictor.obj_ids) < cfg.max_objects and pipe.keyframes.due(time.monotonic()):
            pipe.keyframes.submit(frame.index, frame.image, list(pipe.masks), time.monotonic())

    def add_boxes(self, camera: str, boxes, only_new: bool, frame_index: int | None) -> dict:
        """add_boxes (auto_prompt.mode boxes): boxes matching a tracked object are that object,
        the others become new objects (while the camera has room); replies with each box's fate."""
        pipe = self.cams[camera]
        cfg = pipe.reporter.cfg.auto_prompt
        if cfg.mode != "boxes":
            raise RequestError(ErrorCode.INVALID_VALUE, f"camera {camera!r} does not take add_boxes: set its "
                               f"auto_prompt.mode to boxes in the config (it is {cfg.mode!r})", field="type")
        if pipe.latest_frame is None:
            raise RequestError(ErrorCode.NOT_READY, f"camera {camera!r} has no frame yet; retry once masks arrive")
        tracked = {i: pipe.boxes.get(i, (0, 0, 0, 0)) for i in pipe.predictor.obj_ids}
        for i in tracked:
            if not any(tracked[i]) and pipe.reporter.lifecycle.state(i) == "occluded":
                tracked[i] = pipe.reporter.lifecycle.last_box(i)  # hidden for now: where it was last seen
        decisions = match_boxes(boxes.tolist(), tracked, match_iou=cfg.match_iou, only_new=only_new,
                                room=cfg.max_objects - len(tracked), next_id=max([pipe.highest_id, *tracked]) + 1)
        engine_t = pipe.capture_to_engine(frame_index)
        applied_t = pipe.predictor.frame_index if engine_t is None else engine_t
        for box, d in zip(boxes, decisions, strict=True):
            if d.status == ADDED:
                pipe.predictor.add_prompt(d.obj_id, box=box, frame_index=engine_t)
                self.prompt_log.add(camera, d.obj_id, "box", {"box": box.tolist()})
                pipe.highest_id = max(pipe.highest_id, d.obj_id)
        applied = next(c for c, e in pipe.engine_index.items() if e == applied_t)
        reply = prompt_reply(frame_index=applied, requested_frame_index=frame_index, obj_ids=pipe.predictor.obj_ids)
        reply["boxes"] = [{"status": d.status, "obj_id": d.obj_id, "iou": d.iou} for d in decisions]
        reply["added"] = [d.obj_id for d in decisions if d.status == ADDED]
        return reply

    def _restore_objects(self, pipe: CameraPipeline):
        result = None
        for p in pipe.restore:
            try:
                result = pipe.predictor.add_prompt(p.obj_id, **self._engine_kwargs(p.kind, p.payload))
                log.info("camera %s: restored object %d from the prompt log (%s)", pipe.camera, p.obj_id, p.kind)
            except PromptError as e:
                log.warning("camera %s: could not restore object %d from the prompt log: %s", pipe.camera, p.obj_id, e)
        pipe.restore = []
        return result

    # ------------------------------------------- prompts (rtseg.pipeline.control.ControlHandler)
    @staticmethod
    def _engine_kwargs(kind: str, payload: dict) -> dict:
        if kind == "points":
            return {"points": payload["points"], "labels": payload["labels"]}
        if kind == "box":
            return {"box": payload["box"]}
        if kind == "mask":
            return {"mask": decode_rle(payload["mask"])}
        raise PromptError(f"unknown prompt kind {kind!r}")

    def cameras(self) -> list[str]:
        return list(self.cams)

    def frame_size(self, camera: str) -> tuple[int, int] | None:
        """(height, width) of the camera's latest tracked frame, None before the first."""
        f = self.cams[camera].latest_frame
        return None if f is None else (f.height, f.width)

    def known_objects(self, camera: str) -> list[int]:
        return self.cams[camera].predictor.obj_ids

    def zones(self, camera: str) -> list[dict]:
        """The camera's zones for the `list` reply (a remote viewer draws them)."""
        return [{"name": z.name, "polygon": [list(p) for p in z.polygon], "min_overlap": z.min_overlap}
                for z in self.cams[camera].reporter.cfg.zones]

    def handle(self, request: ValidatedRequest) -> dict:
        """Apply a validated control request (the control server calls this between frames)."""
        try:
            if request.kind is not None:
                return self.apply_prompt(request.camera, request.obj_id, request.kind, request.prompt_payload(),
                                         request.frame_index)
            if request.type == "add_boxes":
                return self.add_boxes(request.camera, request.boxes, request.only_new, request.frame_index)
            if request.type == "remove":
                return self.remove(request.camera, request.obj_id)
            if request.type == "reset":
                return self.reset(request.camera)
            if request.type == "status":
                return status_reply(self.status_message())
        except PromptError as e:
            raise RequestError(ErrorCode.INVALID_VALUE, str(e)) from None
        raise RequestError(ErrorCode.UNKNOWN_TYPE, f"unsupported request type {request.type!r}")

    def apply_prompt(self, camera: str, obj_id: int, kind: str, payload: dict, frame_index: int | None) -> dict:
        """Apply a prompt to the clicked frame if still held, else the latest; log it; reply fields."""
        pipe = self.cams[camera]
        if pipe.latest_frame is None:
            raise RequestError(ErrorCode.NOT_READY, f"camera {camera!r} has no frame yet; retry once masks arrive")
        check_frame_index(camera, frame_index, pipe.latest_frame.index)
        result = pipe.predictor.add_prompt(obj_id, frame_index=pipe.capture_to_engine(frame_index),
                                           **self._engine_kwargs(kind, payload))
        self.prompt_log.add(camera, obj_id, kind, payload)
        pipe.highest_id = max(pipe.highest_id, obj_id)
        applied = next(c for c, e in pipe.engine_index.items() if e == result.frame_index)
        k = result.obj_ids.index(obj_id)
        obj = {"score": float(result.object_scores[k]), "area": int(result.masks[k].sum()),
               "box": [float(v) for v in result.boxes[k]]}
        return prompt_reply(frame_index=applied, requested_frame_index=frame_index, obj_ids=result.obj_ids, obj=obj)

    def remove(self, camera: str, obj_id: int) -> dict:
        self.cams[camera].predictor.remove_object(obj_id)
        self.prompt_log.remove(camera, obj_id)
        self._publish_all(self.cams[camera].reporter.removed([obj_id]))
        return {"obj_ids": self.known_objects(camera)}

    def _publish_all(self, messages) -> None:
        for m in messages:
            self.publisher.publish(m)

    def reset(self, camera: str) -> dict:
        pipe = self.cams[camera]
        self._publish_all(pipe.reporter.removed(pipe.predictor.obj_ids))
        pipe.predictor.reset()
        pipe.engine_index.clear()
        pipe.latest_frame = None
        self.prompt_log.reset(camera)
        return {"obj_ids": []}

    # --------------------------------------------------------------- status
    def source_state(self, camera: str) -> tuple[str, int, str]:
        """(source_state, source_attempt, source_message) of a camera, in the documented values:
        `lost` also while the capture process is gone, silent past its heartbeat, or restarted
        and not delivering yet (a camera that was connected is not back until `connected`)."""
        pipe = self.cams[camera]
        st = self.state_readers[camera].source_state()
        state, attempt, message = st.status, st.attempt, st.message
        if state in ("starting", "connected", "reconnecting") and st.heartbeat_age_s > CAPTURE_SILENT_S:
            state, attempt = "lost", 0
            message = f"capture process (pid {st.writer_pid}) silent for {st.heartbeat_age_s:.1f} s"
        elif state == "starting" and (pipe.was_connected or pipe.frames):
            state, message = "lost", "capture process restarted; waiting for the camera"
        elif state == "connected":
            pipe.was_connected = True
        return state, attempt if state == "reconnecting" else 0, message

    def status_message(self) -> StatusMessage:
        """The status of every camera now (safe to call beside the tracking loop)."""
        cams = {}
        with self._status_lock:  # the state readers are not shared between threads
            for name, pipe in self.cams.items():
                state, attempt, message = self.source_state(name)
                latencies, latest = tuple(pipe.latencies_ms), pipe.latest_frame
                cams[name] = CameraStatus(
                    fps=round(pipe.fps(), 2),
                    latency_p50_ms=round(percentile(latencies, 50), 2) if latencies else None,
                    latency_p99_ms=round(percentile(latencies, 99), 2) if latencies else None,
                    frames_processed=pipe.frames,
                    frames_skipped=pipe.skipped_total,
                    frame_index=None if latest is None else latest.index,
                    obj_ids=tuple(pipe.predictor.obj_ids),
                    source_state=state,
                    source_attempt=attempt,
                    source_message=message,
                )
        return StatusMessage(cameras=cams, gpu_memory=gpu_memory(self.device_name), publisher=self.publisher.stats(),
                             device=self.device_name, uptime_s=round(time.monotonic() - self._started, 3))

    def publish_status(self) -> None:
        message = self.status_message()
        self.publisher.publish(message)
        self._published_states = {name: cam.source_state for name, cam in message.cameras.items()}

    def publish_status_if_changed(self) -> bool:
        """Publish a status now if a camera's source_state differs from the last one published
        (a capture restart can be over within one status period: it must still be seen)."""
        with self._status_lock:
            changed = any(self.source_state(name)[0] != self._published_states.get(name) for name in self.cams)
        if changed:
            self.publish_status()
        return changed


def gpu_memory(device: str) -> dict | None:
    """Memory counters of the GPU the engine runs on (`cuda:N`); None when it runs on the CPU."""
    if not device.startswith("cuda"):
        return None
    import torch

    return {"allocated_bytes": torch.cuda.memory_allocated(device),
            "peak_bytes": torch.cuda.max_memory_allocated(device),
            "reserved_bytes": torch.cuda.memory_reserved(device)}


def build_predictors(cfg: Config, checkpoint: str | None) -> tuple[dict[str, StreamingPredictor], str]:
    """One model shared by one StreamingPredictor per camera, on the configured device and precision."""
    import torch

    from rtseg.engine.build import build_sam2_video_model, resolve_device
    from rtseg.engine.models import model_spec
    from rtseg.engine.precision import choose_precision

    device = resolve_device(cfg.model.device)
    if device.type == "cuda":  # before building: sam2's caches and CUDA streams land on the current GPU
        torch.cuda.set_device(device)
    model = build_sam2_video_model(model_spec(cfg.model.name), None if checkpoint is None else Path(checkpoint),
                                   device, cfg.model.image_size, fill_holes=cfg.engine.fill_holes)
    precision = choose_precision(cfg.engine.precision, device)
    if device.type == "cpu" and model.image_size > 512:
        log.warning("SAM 2 at image_size %d on the CPU takes seconds per frame; for a quick look set "
                    "model.image_size: 256 (configs/demo-cpu.yaml), for real use run on a GPU", model.image_size)
    preds = {
        cam.id: StreamingPredictor(model, max_corrections=cfg.model.max_corrections,
                                   history=cfg.segmenter.recent_frames, precision=precision,
                                   compile=cfg.engine.compile, objects=cfg.engine.object_capacity,
                                   prompts=cfg.engine.prompt_capacity, chunk=object_chunk(cfg, device))
        for cam in cfg.cameras
    }
    return preds, str(device)


def camera_batch(cfg: Config, device: Any) -> int:
    """segmenter.max_batch, or when unset the device's choice: 8 frames per image-encoder pass on a
    GPU, one on the CPU (rtseg.engine.predictor.auto_chunk)."""
    from rtseg.engine.predictor import auto_chunk

    return cfg.segmenter.max_batch or auto_chunk(device) or 8


def object_chunk(cfg: Config, device: Any) -> int | None:
    """engine.object_chunk, or when unset the device's choice (rtseg.engine.predictor.auto_chunk)."""
    from rtseg.engine.predictor import auto_chunk

    return cfg.engine.object_chunk if cfg.engine.object_chunk is not None else auto_chunk(device)


def segmenter_main(cfg: Config, checkpoint: str | None, ring_names: dict[str, str], stop_event: Any,
                   heartbeat: Any, log_endpoint: str | None, state: RunState | None = None) -> None:
    """Process entry point (spawned by the supervisor).

    Emits: masks.<camera>, event.<camera>, prompt.<camera> (auto prompts), frame.<camera> (optional),
    status. Reacts to: control requests add_points, add_box, add_mask, add_boxes, remove, reset, list, status.
    """
    stop_on_sigterm(stop_event.set)
    setup_child_logging(log_endpoint, cfg.log_level)
    try:
        run_segmenter(cfg, checkpoint, ring_names, stop_event, heartbeat, state)
    except FatalError as e:
        log.error("%s", e)
        exit_now(EXIT_FATAL)
    exit_now(EXIT_OK)


class FatalError(RuntimeError):
    """Restarting cannot help (bad checkpoint, port in use...)."""


def wait_for_subscriber(publisher: Publisher, timeout_s: float, stop_event: Any, heartbeat: Any,
                        control: ControlServer) -> None:
    """`every` policy: hold the first frame until someone subscribes to masks (or timeout_s)."""
    deadline = time.monotonic() + timeout_s
    while not publisher.subscribed(b"masks.") and time.monotonic() < deadline and not stop_event.is_set():
        if heartbeat is not None:
            heartbeat.value = time.time()
        control.poll_once(20)
    if not publisher.subscribed(b"masks."):
        log.warning("no masks subscriber after %.0f s: starting anyway", timeout_s)


def run_segmenter(cfg: Config, checkpoint: str | None, ring_names: dict[str, str], stop_event: Any,
                  heartbeat: Any = None, state: RunState | None = None, *, prompt_log: Any = None,
                  on_ready: Any = None) -> None:
    """Build the model, then track until stop_event; a stop request during model work
    abandons it (rtseg.pipeline.pulse). `state`: the run's stream id and frame counters.
    `prompt_log` replaces the state_dir's prompts.jsonl (rtseg.cluster keeps it off the node);
    `on_ready(pub, control)` is called with the endpoints really bound (":*" ports) once both
    sockets are up."""
    pulse = Pulse(stop_event, cfg.network.status_interval_s, heartbeat)
    pulse.start()
    try:
        with pulse.working():
            predictors, device = _build(cfg, checkpoint)
        _serve(cfg, predictors, device, ring_names, stop_event, heartbeat, pulse, state, prompt_log, on_ready)
    except Abandon:
        log.info("stop requested: abandoned the model work in progress")
    finally:
        pulse.stop()
        log.info("segmenter stopped")


def _build(cfg: Config, checkpoint: str | None) -> tuple[dict[str, StreamingPredictor], str]:
    from rtseg.engine.build import DeviceError
    from rtseg.engine.checkpoints import CheckpointError
    from rtseg.engine.precision import PrecisionError

    try:
        return build_predictors(cfg, checkpoint)
    except (CheckpointError, DeviceError, PrecisionError) as e:  # a device torch cannot use, a bad checkpoint
        raise FatalError(str(e)) from None


def _serve(cfg: Config, predictors: dict[str, StreamingPredictor], device: str, ring_names: dict[str, str],
           stop_event: Any, heartbeat: Any, pulse: Pulse, state: RunState | None, prompt_log: Any,
           on_ready: Any) -> None:
    from rtseg.ring import RingReader
    from rtseg.security import CurveServer

    consumer = cfg.segmenter.frame_policy == "every"  # a paced capture waits for this reader
    readers = {cam: RingReader(name, wait_s=30.0, consumer=consumer) for cam, name in ring_names.items()}
    state_readers = {cam: RingReader(name, wait_s=30.0) for cam, name in ring_names.items()}
    curve = CurveServer.from_config(cfg.security)
    publisher = control = seg = None
    try:
        try:
            publisher = Publisher.from_config(cfg.network, curve=curve, stream=state.stream if state else "")
            if prompt_log is None:
                prompt_log = PromptLog(Path(cfg.supervisor.state_dir) / "prompts.jsonl")
            seg = Segmenter(cfg, predictors, readers, prompt_log, publisher, device, state_readers=state_readers,
                            published=state.published if state else None)
            control = ControlServer.from_config(cfg.network, seg, curve=curve, publisher=publisher)
        except OSError as e:  # an endpoint in use: a restart will not free it
            raise FatalError(str(e)) from None
        log.info("segmenter ready on %s: %s, cameras %s", device, cfg.model.name, list(ring_names))
        pulse.segmenter = seg
        # one autocast context for the loop's life (prompts are applied in this thread too): its
        # cache of low-precision weights then lives as long as the loop, not one frame
        precision = next(iter(predictors.values())).precision
        with precision.autocast():
            if on_ready is not None:
                on_ready(publisher.endpoint, control.endpoint)
            if consumer:
                wait_for_subscriber(publisher, cfg.segmenter.wait_for_subscriber_s, stop_event, heartbeat, control)
            while not stop_event.is_set():
                if heartbeat is not None:
                    heartbeat.value = time.time()
                with pulse.working():
                    processed = seg.step(timeout_s=0.02)
                    control.poll_once(0 if processed else 5)
    finally:
        pulse.segmenter = None
        for pipe in seg.cams.values() if seg is not None else ():
            if pipe.keyframes is not None:
                pipe.keyframes.close()
        for closable in (control, publisher):
            if closable is not None:
                closable.close()
        if curve is not None:
            curve.stop()
        for r in (*readers.values(), *state_readers.values()):
            r.close()

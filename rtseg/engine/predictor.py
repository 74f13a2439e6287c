"""StreamingPredictor: SAM 2 video tracking one frame at a time, in memory that never grows.

Per frame, every object of the camera goes through SAM 2 in one batch (step.py): memory
attention over each object's fixed memory slots with the empty ones masked (attention.py,
memory.py), sam2's mask decoder and memory encoder. Prompts (rare) run sam2's own
`track_step` for their object on a view of its slots. The slots hold exactly what SAM 2's
memory attention reads, so the masks equal `SAM2VideoPredictor.propagate_in_video` run from
each object's prompt frame, on an endless stream.
"""
from __future__ import annotations

import contextlib
import logging
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from rtseg.engine.build import build_sam2_video_model, resolve_device
from rtseg.engine.memory import EMPTY, MemoryWindow, ObjectRecord, SlotMemory
from rtseg.engine.models import model_spec
from rtseg.engine.precision import Precision, choose_precision
from rtseg.engine.preprocess import Normalizer, as_rgb_tensor, resize_uint8
from rtseg.engine.prompts import Prompt, PromptError, check_obj_id, validate_prompt
from rtseg.engine.step import fill_mask_holes, render, shared_frame_step, unpack

log = logging.getLogger(__name__)

# `track_step` caps object pointers at min(num_frames, 16): a stream has no end, so pass a
# number larger than any frame index we will see.
STREAM_NUM_FRAMES = 1 << 40


def auto_chunk(device) -> int | None:
    """How many objects go through the step, and how many cameras' frames through the image
    encoder, in one batch when nobody chose: all at once on a GPU (one launch per kernel
    instead of one per item), one at a time on the CPU, where there are no launches to save
    and a batch only grows the working set (against the official predictor, 8 objects in one
    batch ran at 0.90x, one at a time 1.03x; 4 cameras' frames in one encoder pass 0.91x, one
    at a time 1.04x; README "Measured (CPU)")."""
    return 1 if str(device).startswith("cpu") else None


@dataclass
class FrameResult:
    frame_index: int
    obj_ids: list[int]
    masks: np.ndarray  # (N, H, W) bool, source resolution
    object_scores: np.ndarray  # (N,) float32 object-score logits (> 0: object visible)
    boxes: np.ndarray  # (N, 4) float32 xyxy pixels of each mask; all zero for an empty mask
    logits: np.ndarray | None = None  # (N, H, W) float32, source resolution: only when asked for

    def __len__(self) -> int:
        return len(self.obj_ids)


@dataclass
class _HeldFrame:
    image: torch.Tensor  # 3xSxS uint8, resized for the model
    height: int
    width: int


class StreamingPredictor:
    """Online SAM 2: `track(frame)` per frame, `add_prompt` / `remove_object` at any time.

    `objects` and `prompts` are the initial capacities of the memory (objects, and prompted
    frames per object); each doubles when exceeded. `compile`: "off", "default" or "graphs"
    (CUDA graphs; the same as "default" on the CPU) compiles the per-frame step. `chunk`:
    objects per batch of the step (None: all of them in one).
    """

    def __init__(self, model, *, max_corrections: int = 8, history: int = 1, precision: Precision | str = "auto",
                 compile: str = "off", objects: int = 4, prompts: int = 1, chunk: int | None = None):
        if history < 1:
            raise ValueError(f"history must be >= 1 (frames a prompt may target), got {history}")
        if max_corrections < 0:
            raise ValueError(f"max_corrections must be >= 0, got {max_corrections}")
        if objects < 1 or prompts < 1 or (chunk is not None and chunk < 1):
            raise ValueError(f"objects, prompts and chunk must be >= 1, got {objects}, {prompts}, {chunk}")
        self.model = model
        self.device = model.device
        self.image_size = int(model.image_size)
        self.max_corrections = max_corrections
        self.window = MemoryWindow(model.num_maskmem, model.max_obj_ptrs_in_encoder, history)
        # a string is resolved here; a caller sharing one model passes the Precision it chose once
        self.precision = precision if isinstance(precision, Precision) else choose_precision(precision, self.device)
        self._normalize = Normalizer(self.device)
        self.compile = compile
        self.consts, self._frame_step = shared_frame_step(model, compile, self.device, chunk)
        side = self.consts.side
        self.memory = SlotMemory(self.window, tokens=side * side, mem_dim=model.mem_dim, ptr_dim=model.hidden_dim,
                                 low_res=self.image_size // 4, device=self.device, objects=objects,
                                 prompts=prompts, max_prompts=1 + max_corrections)
        self._t = torch.zeros((), dtype=torch.int64, device=self.device)  # the frame index, on the device
        self.reset()

    @classmethod
    def build(cls, model: str = "sam2.1_hiera_t", checkpoint: str | Path | None = None, device: str = "cpu",
              image_size: int | None = None, *, fill_holes: bool = True, **kwargs) -> StreamingPredictor:
        """Build from a model name (sam2.1_hiera_{t,s,b+,l}, sam2_hiera_*); checkpoint=None: random weights.
        Keyword arguments go to the constructor (max_corrections, history, precision, compile, ...)."""
        spec = model_spec(model)
        dev = resolve_device(device)
        sam = build_sam2_video_model(spec, None if checkpoint is None else Path(checkpoint), dev, image_size,
                                     fill_holes=fill_holes)
        return cls(sam, **kwargs)

    # ----------------------------------------------------------------- state
    def reset(self) -> None:
        """Forget every object and frame; the next `track` is frame 0 again (memory stays allocated)."""
        self._objects: OrderedDict[int, ObjectRecord] = OrderedDict()
        self._frames: OrderedDict[int, _HeldFrame] = OrderedDict()
        self._features: tuple[int, tuple] | None = None  # (frame index, prepared backbone features)
        self._frame_index = -1
        for slot in range(self.memory.object_capacity):
            self.memory.clear(slot)

    @property
    def obj_ids(self) -> list[int]:
        return list(self._objects)

    @property
    def frame_index(self) -> int:
        """Index of the latest tracked frame (-1 before the first)."""
        return self._frame_index

    @property
    def held_frames(self) -> range:
        """Frame indices a prompt may target now."""
        if not self._frames:
            return range(0)
        return range(next(iter(self._frames)), self._frame_index + 1)

    def state_nbytes(self) -> int:
        """Bytes of the tracking memory (allocated once; grows only when a capacity doubles)."""
        return self.memory.nbytes()

    def remove_object(self, obj_id: int) -> None:
        if obj_id not in self._objects:
            raise PromptError(f"cannot remove object {obj_id!r}: no such object (objects: {self.obj_ids})")
        rec = self._objects.pop(obj_id)
        last = len(self._objects)  # keep the used slots a prefix: the last one moves into the hole
        if rec.slot != last:
            moved = next(r for r in self._objects.values() if r.slot == last)
            self.memory.move(last, rec.slot)
            moved.slot = rec.slot
        self.memory.clear(last)

    # -------------------------------------------------------------- tracking
    def track(self, frame: np.ndarray | torch.Tensor, *, logits: bool = False) -> FrameResult:
        """Process `frame` (HxWx3 uint8 RGB) as the next frame of the stream.

        The result holds source-size masks, boxes and scores; `logits=True` adds the float logits."""
        with self._inference():
            t = self._hold(frame)
            return self._track_features(t, self._features_of(t), logits)

    def _hold(self, frame) -> int:
        """Take `frame` as the next frame: resized and held for prompts; returns its index."""
        rgb = as_rgb_tensor(frame, self.device)
        t = self._frame_index + 1
        self._frames[t] = _HeldFrame(resize_uint8(rgb, self.image_size), int(rgb.shape[2]), int(rgb.shape[3]))
        while len(self._frames) > self.window.history:
            self._frames.popitem(last=False)
        self._frame_index = t
        return t

    def _track_features(self, t: int, feats: tuple, logits: bool) -> FrameResult:
        """Every object through the step on frame t, results to the host in one copy."""
        held = self._frames[t]
        recs = list(self._objects.values())
        if not recs:
            return _empty_result(t, held, logits)
        self._t.fill_(t)
        if self.compile != "off":  # static shapes: every object slot, the whole memory window
            slots, span = self.memory.t, None
        else:  # the used slots; tracked frames begin after the oldest object's first prompt
            slots, span = self.memory.t.rows(0, len(recs)), t - 1 - min(r.init_frame for r in recs)
        buf = self._frame_step(feats, self._t, slots, held.height, held.width, logits, span)
        n = slots.cond_frame.shape[0]
        masks, boxes, scores, full = unpack(buf.cpu().numpy(), n, held.height, held.width, logits)
        rows = [r.slot for r in recs]
        return FrameResult(t, [r.obj_id for r in recs], masks[rows], scores[rows], boxes[rows],
                           None if full is None else full[rows])

    def add_prompt(self, obj_id: int, *, points=None, labels=None, box=None, mask=None,
                   frame_index: int | None = None, logits: bool = False) -> FrameResult:
        """Prompt object `obj_id` on a held frame (default: the latest tracked frame).

        A new id starts a new object there; an existing one gets a correction, kept as
        conditioning memory (at most `max_corrections` per object, oldest dropped first).
        Clicks on the same object and frame accumulate; a box or a mask replaces them.
        Returns the masks of that frame. Raises PromptError, changing nothing, for a bad prompt.
        """
        obj_id = check_obj_id(obj_id)
        if self._frame_index < 0:
            raise PromptError("no frame tracked yet: call track(frame) before prompting")
        t = self._frame_index if frame_index is None else frame_index
        if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or int(t) not in self.held_frames:
            raise PromptError(
                f"frame_index {frame_index!r} is not held; prompts can target frames "
                f"{self.held_frames.start}..{self.held_frames.stop - 1}"
            )
        t = int(t)
        held = self._frames[t]
        prompt = validate_prompt(points=points, labels=labels, box=box, mask=mask,
                                 width=held.width, height=held.height)
        rec = self._objects.get(obj_id)
        if rec is not None and t < rec.init_frame:
            raise PromptError(f"object {obj_id} starts at frame {rec.init_frame}; cannot prompt it at frame {t}")
        with self._inference():
            if rec is None:
                rec = self._new_object(obj_id, t)
            self._prompt(rec, t, prompt, held)
            self._retrack(rec, t + 1)
            return self._result(t, logits)

    # ------------------------------------------------------------- internals
    def _inference(self):
        stack = contextlib.ExitStack()
        stack.enter_context(torch.inference_mode())
        if self.device.type == "cuda":  # sam2 makes its caches on the current device: make it ours
            stack.enter_context(torch.cuda.device(self.device))
        # nested in the caller's context (segmenter, bench) this keeps autocast's weight cache
        stack.enter_context(self.precision.autocast())
        return stack

    def _features_of(self, t: int) -> tuple:
        """Backbone features of held frame t (the latest frame's are cached)."""
        if self._features is None or self._features[0] != t:
            image = self._normalize(self._frames[t].image)
            self._features = (t, prepare_features(self.model, self.model.forward_image(image)))
        return self._features[1]

    def _new_object(self, obj_id: int, t: int) -> ObjectRecord:
        slot = len(self._objects)
        if slot == self.memory.object_capacity:
            log.info("object capacity %d reached: doubling it", slot)
            self.memory.grow(objects=2 * slot)
        self.memory.clear(slot)
        rec = ObjectRecord(obj_id, slot, init_frame=t)
        self._objects[obj_id] = rec
        return rec

    def _prompt(self, rec: ObjectRecord, t: int, prompt: Prompt, held: _HeldFrame) -> None:
        """sam2's track_step for the prompt on frame t, its memory encoded and stored as prompted."""
        model_prompt = self._to_model_prompt(rec, t, prompt, held)
        feats = self._features_of(t)
        prev_logits = None
        if model_prompt["points"] is not None:
            prev_logits = self.memory.output_at(rec.slot, t)
            prev_logits = None if prev_logits is None else prev_logits.clamp(-32.0, 32.0)
        out = self._sam2_step(rec, t, feats, cond=t == rec.init_frame, prompt=model_prompt, prev_logits=prev_logits)
        out["pred_masks"] = fill_mask_holes(self.model, out["pred_masks"])  # kept filled; its memory encoded from that
        maskmem = self._encode_prompted_memory(out, feats)
        if model_prompt["points"] is not None:
            rec.point_inputs[t] = model_prompt["points"]
        else:
            rec.point_inputs.pop(t, None)
        k = self._prompt_slot(rec, t)
        if k is not None:
            self.memory.write_prompted(rec.slot, k, t, maskmem, out["obj_ptr"][0])
        self.memory.forget_frame(rec.slot, t)
        self.memory.write_output(rec.slot, t, out["pred_masks"], out["object_score_logits"])

    def _prompt_slot(self, rec: ObjectRecord, t: int) -> int | None:
        """The prompt slot for frame t (None: a correction dropped at once by max_corrections=0)."""
        if t in rec.cond_slots:
            return rec.cond_slots[t]
        if t != rec.init_frame:
            rec.corrections.append(t)
            if len(rec.corrections) > self.max_corrections:
                dropped = rec.corrections.popleft()
                log.info("object %d: dropped its oldest correction (frame %d) to stay within %d",
                         rec.obj_id, dropped, self.max_corrections)
                rec.point_inputs.pop(dropped, None)
                if dropped == t:
                    return None
                self.memory.t.cond_frame[rec.slot, rec.cond_slots.pop(dropped)] = EMPTY
        used = set(rec.cond_slots.values())
        free = [k for k in range(self.memory.prompt_capacity) if k not in used]
        if not free:
            log.info("prompt capacity %d reached: growing it", self.memory.prompt_capacity)
            free = [self.memory.prompt_capacity]
            self.memory.grow(prompts=2 * free[0])
        rec.cond_slots[t] = free[0]
        return free[0]

    def _to_model_prompt(self, rec: ObjectRecord, t: int, prompt: Prompt, held: _HeldFrame) -> dict:
        """Source-pixel prompt -> model input (points scaled to image_size, mask resized)."""
        s = self.image_size
        if prompt.mask is not None:
            m = torch.from_numpy(prompt.mask).to(self.device)[None, None].float()
            if m.shape[-2:] != (s, s):
                m = F.interpolate(m, size=(s, s), mode="bilinear", align_corners=False, antialias=True)
                m = (m >= 0.5).float()
            return {"points": None, "mask": m}
        coords, labels = [], []
        if prompt.box is not None:
            coords.append(prompt.box.reshape(2, 2))
            labels.append(np.array([2, 3], dtype=np.int32))
        if prompt.points is not None:
            coords.append(prompt.points)
            labels.append(prompt.labels)
        # normalise then scale, in this order, exactly as sam2's add_new_points_or_box does
        size = torch.tensor([held.width, held.height])
        new = {
            "point_coords": (torch.from_numpy(np.concatenate(coords)) / size * s)[None].to(self.device),
            "point_labels": torch.from_numpy(np.concatenate(labels))[None].to(self.device),
        }
        old = rec.point_inputs.get(t)
        if prompt.box is None and old is not None:  # clicks accumulate; a box starts over
            new = {k: torch.cat([old[k], new[k]], dim=1) for k in new}
        return {"points": new, "mask": None}

    def _sam2_step(self, rec: ObjectRecord, t: int, feats: tuple, *, cond: bool, prompt: dict | None,
                   prev_logits: torch.Tensor | None) -> dict:
        """sam2's own `track_step` for one object on frame t, reading its memory from the slots."""
        vision_feats, vision_pos, feat_sizes = feats
        return self.model.track_step(
            frame_idx=t,
            is_init_cond_frame=cond,
            current_vision_feats=vision_feats,
            current_vision_pos_embeds=vision_pos,
            feat_sizes=feat_sizes,
            point_inputs=None if prompt is None else prompt["points"],
            mask_inputs=None if prompt is None else prompt["mask"],
            output_dict=self.memory.sam2_view(rec, t, self.consts.maskmem_pos, self.consts.side),
            num_frames=STREAM_NUM_FRAMES,
            track_in_reverse=False,
            run_mem_encoder=prompt is None,  # prompted frames: encoded after the prompt, as sam2 does
            prev_sam_mask_logits=prev_logits,
        )

    def _encode_prompted_memory(self, out: dict, feats: tuple) -> torch.Tensor:
        """Memory of a prompted frame, encoded as `propagate_in_video_preflight` does: [HW, D] bf16."""
        vision_feats, _, feat_sizes = feats
        high_res = F.interpolate(out["pred_masks"].to(self.device), size=(self.image_size, self.image_size),
                                 mode="bilinear", align_corners=False)
        maskmem, _ = self.model._encode_new_memory(
            current_vision_feats=vision_feats,
            feat_sizes=feat_sizes,
            pred_masks_high_res=high_res,
            object_score_logits=out["object_score_logits"],
            is_mask_from_pts=True,
        )
        return _tokens(maskmem)

    def _retrack(self, rec: ObjectRecord, start: int) -> None:
        """After a prompt on an earlier held frame, bring `rec` up to the latest frame again."""
        if start > self._frame_index:
            return
        log.debug("object %d: re-tracking frames %d..%d after a prompt", rec.obj_id, start, self._frame_index)
        for f in range(start, self._frame_index + 1):
            if f in rec.cond_slots:
                continue
            out = self._sam2_step(rec, f, self._features_of(f), cond=False, prompt=None, prev_logits=None)
            self.memory.write_tracked(rec.slot, f, _tokens(out["maskmem_features"]), out["obj_ptr"][0])
            self.memory.write_output(rec.slot, f, fill_mask_holes(self.model, out["pred_masks"]),
                                     out["object_score_logits"])

    def _result(self, t: int, logits: bool) -> FrameResult:
        """The masks of every object present on held frame t (after a prompt)."""
        held = self._frames[t]
        recs = [r for r in self._objects.values() if r.init_frame <= t]
        if not recs:
            return _empty_result(t, held, logits)
        low = torch.stack([self.memory.output_at(r.slot, t) for r in recs])[:, 0]
        scores = torch.stack([self.memory.score_at(r.slot, t) for r in recs])
        buf = render(low, scores, held.height, held.width, logits)
        masks, boxes, scores_np, full = unpack(buf.cpu().numpy(), len(recs), held.height, held.width, logits)
        return FrameResult(t, [r.obj_id for r in recs], masks, scores_np, boxes, full)


def prepare_features(model, backbone_out: dict) -> tuple:
    """(vision_feats, vision_pos, feat_sizes) of a batch-1 backbone output, as track_step takes them."""
    _, vision_feats, vision_pos, feat_sizes = model._prepare_backbone_features(backbone_out)
    return vision_feats, vision_pos, feat_sizes


def _tokens(maskmem: torch.Tensor) -> torch.Tensor:
    """[1, D, h, w] memory features -> [HW, D] bf16 tokens (stored in bf16, as sam2's predictor does)."""
    return maskmem[0].flatten(1).t().to(torch.bfloat16)


def _empty_result(t: int, held: _HeldFrame, logits: bool) -> FrameResult:
    h, w = held.height, held.width
    return FrameResult(t, [], np.zeros((0, h, w), bool), np.zeros(0, np.float32), np.zeros((0, 4), np.float32),
                       np.zeros((0, h, w), np.float32) if logits else None)

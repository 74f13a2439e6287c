"""StreamingPredictor: SAM 2 video tracking one frame at a time, in memory that never grows.

It calls sam2's own model (`forward_image`, `track_step`, `_encode_new_memory`) with a
per-object memory that holds exactly what SAM 2's memory attention reads (see memory.py),
so its masks equal `SAM2VideoPredictor.propagate_in_video` run from each object's prompt
frame, on an endless stream.
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

from rtseg.engine import holes
from rtseg.engine.build import build_sam2_video_model, resolve_device
from rtseg.engine.memory import MemoryWindow, ObjectMemory, Output
from rtseg.engine.models import model_spec
from rtseg.engine.precision import Precision, choose_precision
from rtseg.engine.preprocess import Normalizer, as_rgb_tensor, resize_uint8
from rtseg.engine.prompts import Prompt, PromptError, check_obj_id, validate_prompt

log = logging.getLogger(__name__)

# `track_step` caps object pointers at min(num_frames, 16): a stream has no end, so pass a
# number larger than any frame index we will see.
STREAM_NUM_FRAMES = 1 << 40


@dataclass
class FrameResult:
    frame_index: int
    obj_ids: list[int]
    masks: np.ndarray  # (N, H, W) bool, source resolution
    logits: np.ndarray  # (N, H, W) float32, source resolution
    object_scores: np.ndarray  # (N,) float32 object-score logits (> 0: object visible)
    boxes: np.ndarray  # (N, 4) float32 xyxy pixels of each mask; all zero for an empty mask

    def __len__(self) -> int:
        return len(self.obj_ids)


@dataclass
class _HeldFrame:
    image: torch.Tensor  # 3xSxS uint8, resized for the model
    height: int
    width: int


class StreamingPredictor:
    """Online SAM 2: `track(frame)` per frame, `add_prompt` / `remove_object` at any time."""

    def __init__(self, model, *, max_corrections: int = 8, history: int = 1, precision: Precision | str = "auto"):
        if history < 1:
            raise ValueError(f"history must be >= 1 (frames a prompt may target), got {history}")
        if max_corrections < 0:
            raise ValueError(f"max_corrections must be >= 0, got {max_corrections}")
        self.model = model
        self.device = model.device
        self.image_size = int(model.image_size)
        self.max_corrections = max_corrections
        self.window = MemoryWindow(model.num_maskmem, model.max_obj_ptrs_in_encoder, history)
        # a string is resolved here; a caller sharing one model passes the Precision it chose once
        self.precision = precision if isinstance(precision, Precision) else choose_precision(precision, self.device)
        self._normalize = Normalizer(self.device)
        self.reset()

    @classmethod
    def build(
        cls,
        model: str = "sam2.1_hiera_t",
        checkpoint: str | Path | None = None,
        device: str = "cpu",
        image_size: int | None = None,
        *,
        max_corrections: int = 8,
        history: int = 1,
        precision: Precision | str = "auto",
        fill_holes: bool = True,
    ) -> StreamingPredictor:
        """Build from a model name (sam2.1_hiera_{t,s,b+,l}, sam2_hiera_*); checkpoint=None: random weights."""
        spec = model_spec(model)
        dev = resolve_device(device)
        sam = build_sam2_video_model(spec, None if checkpoint is None else Path(checkpoint), dev, image_size,
                                     fill_holes=fill_holes)
        return cls(sam, max_corrections=max_corrections, history=history, precision=precision)

    # ----------------------------------------------------------------- state
    def reset(self) -> None:
        """Forget every object and frame; the next `track` is frame 0 again."""
        self._objects: OrderedDict[int, ObjectMemory] = OrderedDict()
        self._frames: OrderedDict[int, _HeldFrame] = OrderedDict()
        self._features: tuple[int, tuple] | None = None  # (frame index, prepared backbone features)
        self._maskmem_pos_enc: list[torch.Tensor] | None = None
        self._frame_index = -1

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
        """Bytes held by the tracking memory of all objects."""
        return sum(obj.nbytes() for obj in self._objects.values())

    def remove_object(self, obj_id: int) -> None:
        if obj_id not in self._objects:
            raise PromptError(f"cannot remove object {obj_id!r}: no such object (objects: {self.obj_ids})")
        del self._objects[obj_id]

    # -------------------------------------------------------------- tracking
    def track(self, frame: np.ndarray | torch.Tensor) -> FrameResult:
        """Process `frame` (HxWx3 uint8 RGB) as the next frame of the stream."""
        with self._inference():
            rgb = as_rgb_tensor(frame, self.device)
            t = self._frame_index + 1
            held = _HeldFrame(resize_uint8(rgb, self.image_size), int(rgb.shape[2]), int(rgb.shape[3]))
            self._frames[t] = held
            while len(self._frames) > self.window.history:
                self._frames.popitem(last=False)
            self._frame_index = t
            feats = self._features_of(t)
            for obj in self._objects.values():
                out = self._step(obj, t, feats, cond=False, prompt=None, prev_logits=None)
                obj.non_cond[t] = out
                obj.trim(t, self.window)
            return self._result(t)

    def add_prompt(self, obj_id: int, *, points=None, labels=None, box=None, mask=None,
                   frame_index: int | None = None) -> FrameResult:
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
        obj = self._objects.get(obj_id)
        if obj is not None and t < obj.init_frame:
            raise PromptError(f"object {obj_id} starts at frame {obj.init_frame}; cannot prompt it at frame {t}")
        with self._inference():
            is_new = obj is None
            if is_new:
                obj = ObjectMemory(obj_id, init_frame=t)
            model_prompt = self._to_model_prompt(obj, t, prompt, held)
            feats = self._features_of(t)
            initial = t == obj.init_frame
            previous = obj.output_at(t)
            prev_logits = None
            if model_prompt["points"] is not None and previous is not None and previous["pred_masks"] is not None:
                prev_logits = previous["pred_masks"].to(self.device).clamp(-32.0, 32.0)
            out = self._step(obj, t, feats, cond=initial, prompt=model_prompt, prev_logits=prev_logits)
            out["maskmem_features"] = self._encode_prompted_memory(out, feats)
            if model_prompt["points"] is not None:
                obj.point_inputs[t] = model_prompt["points"]
            else:
                obj.point_inputs.pop(t, None)
            dropped = obj.set_cond(t, out, self.max_corrections)
            if dropped is not None:
                log.info("object %d: dropped its oldest correction (frame %d) to stay within %d",
                         obj_id, dropped, self.max_corrections)
            if is_new:
                self._objects[obj_id] = obj
            self._retrack(obj, t + 1)
            obj.trim(self._frame_index, self.window)
            return self._result(t)

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
            backbone_out = self.model.forward_image(image)
            _, vision_feats, vision_pos, feat_sizes = self.model._prepare_backbone_features(backbone_out)
            self._features = (t, (vision_feats, vision_pos, feat_sizes))
        return self._features[1]

    def _to_model_prompt(self, obj: ObjectMemory, t: int, prompt: Prompt, held: _HeldFrame) -> dict:
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
        old = obj.point_inputs.get(t)
        if prompt.box is None and old is not None:  # clicks accumulate; a box starts over
            new = {k: torch.cat([old[k], new[k]], dim=1) for k in new}
        return {"points": new, "mask": None}

    def _step(self, obj: ObjectMemory, t: int, feats: tuple, *, cond: bool, prompt: dict | None,
              prev_logits: torch.Tensor | None) -> Output:
        """One sam2 `track_step` for one object on frame t, compacted as sam2's predictor stores it."""
        vision_feats, vision_pos, feat_sizes = feats
        out = self.model.track_step(
            frame_idx=t,
            is_init_cond_frame=cond,
            current_vision_feats=vision_feats,
            current_vision_pos_embeds=vision_pos,
            feat_sizes=feat_sizes,
            point_inputs=None if prompt is None else prompt["points"],
            mask_inputs=None if prompt is None else prompt["mask"],
            output_dict=obj.view_before(t),
            num_frames=STREAM_NUM_FRAMES,
            track_in_reverse=False,
            run_mem_encoder=prompt is None,  # prompted frames: encoded after the prompt, as sam2 does
            prev_sam_mask_logits=prev_logits,
        )
        pred_masks = out["pred_masks"]
        if self.model.fill_hole_area > 0:  # as sam2's predictor does after track_step (holes.py says where)
            pred_masks = holes.fill_holes_in_mask_scores(pred_masks, self.model.fill_hole_area)
        maskmem = out["maskmem_features"]
        if out["maskmem_pos_enc"] is not None and self._maskmem_pos_enc is None:
            self._maskmem_pos_enc = [x[0:1].clone() for x in out["maskmem_pos_enc"]]
        return {
            "maskmem_features": None if maskmem is None else maskmem.to(torch.bfloat16),
            "maskmem_pos_enc": self._maskmem_pos_enc,
            "pred_masks": pred_masks,
            "obj_ptr": out["obj_ptr"],
            "object_score_logits": out["object_score_logits"],
        }

    def _encode_prompted_memory(self, out: Output, feats: tuple) -> torch.Tensor:
        """Memory of a prompted frame, encoded as `propagate_in_video_preflight` does."""
        vision_feats, _, feat_sizes = feats
        high_res = F.interpolate(out["pred_masks"].to(self.device), size=(self.image_size, self.image_size),
                                 mode="bilinear", align_corners=False)
        maskmem, pos_enc = self.model._encode_new_memory(
            current_vision_feats=vision_feats,
            feat_sizes=feat_sizes,
            pred_masks_high_res=high_res,
            object_score_logits=out["object_score_logits"],
            is_mask_from_pts=True,
        )
        if self._maskmem_pos_enc is None:
            self._maskmem_pos_enc = [x[0:1].clone() for x in pos_enc]
            out["maskmem_pos_enc"] = self._maskmem_pos_enc
        return maskmem.to(torch.bfloat16)

    def _retrack(self, obj: ObjectMemory, start: int) -> None:
        """After a prompt on an earlier held frame, bring `obj` up to the latest frame again."""
        if start > self._frame_index:
            return
        log.debug("object %d: re-tracking frames %d..%d after a prompt", obj.obj_id, start, self._frame_index)
        for f in range(start, self._frame_index + 1):
            if f in obj.cond:
                continue
            obj.non_cond[f] = self._step(obj, f, self._features_of(f), cond=False, prompt=None, prev_logits=None)

    def _result(self, t: int) -> FrameResult:
        held = self._frames[t]
        ids, logits_lr, scores = [], [], []
        for obj_id, obj in self._objects.items():
            out = obj.output_at(t)
            if out is None or out["pred_masks"] is None:
                continue
            ids.append(obj_id)
            logits_lr.append(out["pred_masks"])
            scores.append(out["object_score_logits"].reshape(()))
        h, w = held.height, held.width
        if not ids:
            return FrameResult(t, [], np.zeros((0, h, w), bool), np.zeros((0, h, w), np.float32),
                               np.zeros(0, np.float32), np.zeros((0, 4), np.float32))
        low = torch.cat(logits_lr, dim=0).float()
        logits = F.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)[:, 0]
        masks = logits > 0
        boxes = _boxes_of(masks)
        return FrameResult(
            frame_index=t,
            obj_ids=ids,
            masks=masks.cpu().numpy(),
            logits=logits.cpu().numpy(),
            object_scores=torch.stack(scores).float().cpu().numpy(),
            boxes=boxes.cpu().numpy(),
        )


def _boxes_of(masks: torch.Tensor) -> torch.Tensor:
    """(N, H, W) bool -> (N, 4) float32 xyxy (x1, y1 exclusive edges); zeros for empty masks."""
    n = masks.shape[0]
    cols = masks.any(dim=1)
    rows = masks.any(dim=2)
    boxes = torch.zeros((n, 4), dtype=torch.float32, device=masks.device)
    for i in range(n):
        xs = torch.nonzero(cols[i]).flatten()
        ys = torch.nonzero(rows[i]).flatten()
        if xs.numel():
            boxes[i] = torch.stack([xs[0], ys[0], xs[-1] + 1, ys[-1] + 1]).float()
    return boxes

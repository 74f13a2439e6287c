"""Per-object tracking memory: exactly what SAM 2's memory attention reads, nothing more.

At frame t, sam2 1.1.0 (`SAM2Base._prepare_memory_conditioned_features`, every sam2.1
config) reads, per object: every conditioning (prompted) frame's memory and object pointer,
the spatial memories of frames t-1..t-6 (`num_maskmem=7`) and the object pointers of frames
t-1..t-15 (`max_obj_ptrs_in_encoder=16`). `ObjectMemory` keeps the outputs in the dicts
`track_step` reads (`output_dict`) and trims them after every frame, so it computes what
the offline predictor computes while its size stays constant forever.

Besides the latest frame, a prompt may target any of the last `history` frames, so the
window kept is widened by `history - 1` frames; low-resolution mask logits are kept only
for frames inside that window (a correction click reuses them as SAM does).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import torch

Output = dict[str, Any]  # sam2's compact per-frame output: maskmem_features, maskmem_pos_enc, pred_masks, obj_ptr, object_score_logits


@dataclass
class MemoryWindow:
    """How far back each part of a non-conditioning output is needed."""

    num_maskmem: int = 7  # sam2: current frame + 6 previous spatial memories
    max_obj_ptrs: int = 16  # sam2: current frame + 15 previous object pointers
    history: int = 1  # frames a prompt may target: the latest and history-1 before it

    def keep_from(self, latest: int) -> tuple[int, int, int]:
        """(first frame whose obj_ptr, whose maskmem, whose pred_masks must be kept)."""
        earliest_prompt = latest - self.history + 1
        return (
            earliest_prompt - (self.max_obj_ptrs - 1),
            earliest_prompt - (self.num_maskmem - 1),
            earliest_prompt,
        )


@dataclass
class ObjectMemory:
    obj_id: int
    init_frame: int  # the frame of the object's first prompt
    output_dict: dict[str, dict[int, Output]] = field(
        default_factory=lambda: {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}
    )
    corrections: deque[int] = field(default_factory=deque)  # conditioning frames after the first
    point_inputs: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)  # frame -> clicks so far

    @property
    def cond(self) -> dict[int, Output]:
        return self.output_dict["cond_frame_outputs"]

    @property
    def non_cond(self) -> dict[int, Output]:
        return self.output_dict["non_cond_frame_outputs"]

    def output_at(self, frame: int) -> Output | None:
        return self.cond.get(frame) or self.non_cond.get(frame)

    def view_before(self, frame: int) -> dict[str, dict[int, Output]]:
        """The memory as it stood before `frame`: what SAM 2 reads when it reaches `frame`."""
        return {key: {f: o for f, o in d.items() if f < frame} for key, d in self.output_dict.items()}

    def set_cond(self, frame: int, out: Output, max_corrections: int) -> int | None:
        """Store a prompted frame as conditioning memory; returns a correction frame dropped."""
        self.cond[frame] = out
        self.non_cond.pop(frame, None)
        if frame != self.init_frame and frame not in self.corrections:
            self.corrections.append(frame)
        dropped = None
        if len(self.corrections) > max_corrections:
            dropped = self.corrections.popleft()
            self.cond.pop(dropped, None)
            self.point_inputs.pop(dropped, None)
        return dropped

    def trim(self, latest: int, window: MemoryWindow) -> None:
        ptr_from, mem_from, logits_from = window.keep_from(latest)
        for f in [f for f in self.non_cond if f < ptr_from]:
            del self.non_cond[f]
        for f, out in self.non_cond.items():
            if f < mem_from:
                out["maskmem_features"] = None
            if f < logits_from:
                out["pred_masks"] = None
        for f, out in self.cond.items():
            if f < logits_from:
                out["pred_masks"] = None
        for f in [f for f in self.point_inputs if f < logits_from]:
            del self.point_inputs[f]

    def nbytes(self) -> int:
        total = 0
        for d in self.output_dict.values():
            for out in d.values():
                for key in ("maskmem_features", "pred_masks", "obj_ptr", "object_score_logits"):
                    t = out.get(key)
                    if t is not None:
                        total += t.numel() * t.element_size()
        return total

"""Per-camera tracking memory in fixed, preallocated tensors: exactly what SAM 2 reads.

At frame t, sam2 1.1.0 (`SAM2Base._prepare_memory_conditioned_features`, every sam2.1
config) reads, per object: every conditioning (prompted) frame's memory and object pointer,
the spatial memories of frames t-1..t-6 (`num_maskmem=7`) and the object pointers of frames
t-1..t-15 (`max_obj_ptrs_in_encoder=16`). `SlotMemory` holds exactly that for every object
of a camera, in tensors allocated once:

- prompt slots (per object, `prompt_capacity` of them): a prompted frame's memory, pointer
  and frame index;
- rings indexed by frame % size: spatial memories (6 + history frames), pointers
  (15 + history: a prompt on the oldest held frame reads the 15 before it), and the low-resolution mask logits and object score of the last
  `history` frames (a prompt may target any of them; a correction click reuses the logits).

A slot is in use when its stored frame index is the one the reader asks for, so nothing is
ever cleared on the hot path. Adding, correcting and removing objects writes slots; when the
object or prompt capacity is exceeded it doubles (once), which is the only time memory grows.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import NamedTuple

import torch

EMPTY = -(1 << 40)  # frame index of a slot that holds nothing


@dataclass
class MemoryWindow:
    """How far back each part of the memory is needed."""

    num_maskmem: int = 7  # sam2: current frame + 6 previous spatial memories
    max_obj_ptrs: int = 16  # sam2: current frame + 15 previous object pointers
    history: int = 1  # frames a prompt may target: the latest and history-1 before it

    @property
    def mem_frames(self) -> int:
        return self.num_maskmem - 1

    @property
    def ptr_frames(self) -> int:
        return self.max_obj_ptrs - 1


class SlotTensors(NamedTuple):
    """The state tensors of one camera (or a prefix of its object slots), all written in place."""

    cond_mem: torch.Tensor  # [N, K, HW, D] bf16 spatial memory of prompted frames (token layout)
    cond_ptr: torch.Tensor  # [N, K, C] object pointers of prompted frames
    cond_frame: torch.Tensor  # [N, K] int64
    mem: torch.Tensor  # [N, Rm, HW, D] bf16 ring of spatial memories
    mem_frame: torch.Tensor  # [N, Rm]
    ptr: torch.Tensor  # [N, Rp, C] ring of object pointers
    ptr_frame: torch.Tensor  # [N, Rp]
    out_logits: torch.Tensor  # [N, Ro, 1, s/4, s/4] low-res mask logits of recent frames
    out_score: torch.Tensor  # [N, Ro, 1] object-score logits
    out_frame: torch.Tensor  # [N, Ro]

    def rows(self, start: int, stop: int) -> SlotTensors:
        """Object slots start..stop-1 (views: writes land in the full tensors)."""
        return SlotTensors(*(t[start:stop] for t in self))


PER_FRAME_DIMS = {"cond_mem": 1, "cond_ptr": 1, "cond_frame": 1}  # the prompt-slot dimension


@dataclass
class ObjectRecord:
    """Host-side bookkeeping of one object (the tensors live in SlotMemory)."""

    obj_id: int
    slot: int
    init_frame: int  # the frame of the object's first prompt
    cond_slots: dict[int, int] = field(default_factory=dict)  # prompted frame -> prompt slot
    corrections: deque[int] = field(default_factory=deque)  # prompted frames after the first
    point_inputs: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)  # frame -> clicks so far


class SlotMemory:
    """The fixed-size tracking memory of one camera."""

    def __init__(self, window: MemoryWindow, *, tokens: int, mem_dim: int, ptr_dim: int, low_res: int,
                 device: torch.device, objects: int = 4, prompts: int = 1, max_prompts: int = 9):
        self.window = window
        self.device = device
        self.max_prompts = max_prompts
        self._shapes = {"tokens": tokens, "mem_dim": mem_dim, "ptr_dim": ptr_dim, "low_res": low_res}
        self.t = self._allocate(objects, min(prompts, max_prompts))

    @property
    def object_capacity(self) -> int:
        return self.t.cond_frame.shape[0]

    @property
    def prompt_capacity(self) -> int:
        return self.t.cond_frame.shape[1]

    def nbytes(self) -> int:
        return sum(x.numel() * x.element_size() for x in self.t)

    @torch.inference_mode()  # the state is only ever written under inference mode (the predictor's)
    def _allocate(self, n: int, k: int) -> SlotTensors:
        s, w, dev = self._shapes, self.window, self.device
        rm, rp, ro = w.mem_frames + w.history, w.ptr_frames + w.history, w.history
        hw, d, c, lo = s["tokens"], s["mem_dim"], s["ptr_dim"], s["low_res"]

        def frames(*shape):
            return torch.full(shape, EMPTY, dtype=torch.int64, device=dev)

        return SlotTensors(
            cond_mem=torch.zeros(n, k, hw, d, dtype=torch.bfloat16, device=dev),
            cond_ptr=torch.zeros(n, k, c, device=dev), cond_frame=frames(n, k),
            mem=torch.zeros(n, rm, hw, d, dtype=torch.bfloat16, device=dev), mem_frame=frames(n, rm),
            ptr=torch.zeros(n, rp, c, device=dev), ptr_frame=frames(n, rp),
            out_logits=torch.zeros(n, ro, 1, lo, lo, device=dev), out_score=torch.zeros(n, ro, 1, device=dev),
            out_frame=frames(n, ro),
        )

    @torch.inference_mode()
    def grow(self, *, objects: int | None = None, prompts: int | None = None) -> None:
        """Reallocate with more object or prompt slots, keeping what is stored."""
        n = objects or self.object_capacity
        k = min(prompts or self.prompt_capacity, self.max_prompts)
        new = self._allocate(n, k)
        old_n, old_k = self.object_capacity, self.prompt_capacity
        for name, dst, src in zip(SlotTensors._fields, new, self.t):
            if name in PER_FRAME_DIMS:
                dst[:old_n, :old_k].copy_(src)
            else:
                dst[:old_n].copy_(src)
        self.t = new

    @torch.inference_mode()
    def clear(self, slot: int) -> None:
        """Forget everything slot `slot` holds (its frames become EMPTY; contents stay finite)."""
        for name in ("cond_frame", "mem_frame", "ptr_frame", "out_frame"):
            getattr(self.t, name)[slot] = EMPTY

    @torch.inference_mode()
    def move(self, src: int, dst: int) -> None:
        for x in self.t:
            x[dst] = x[src]

    def forget_frame(self, slot: int, frame: int) -> None:
        """Drop the tracked (non-prompted) memory of `frame`: it became a prompted frame."""
        for ring in (self.t.mem_frame[slot], self.t.ptr_frame[slot]):
            i = frame % ring.shape[0]
            ring[i] = torch.where(ring[i] == frame, EMPTY, ring[i])

    # ------------------------------------------------------------ writes (host path)
    def write_tracked(self, slot: int, frame: int, maskmem: torch.Tensor | None, ptr: torch.Tensor) -> None:
        """A tracked frame's memory (maskmem [HW, D] bf16 tokens, ptr [C])."""
        t = self.t
        if maskmem is not None:
            i = frame % t.mem.shape[1]
            t.mem[slot, i] = maskmem
            t.mem_frame[slot, i] = frame
        i = frame % t.ptr.shape[1]
        t.ptr[slot, i] = ptr
        t.ptr_frame[slot, i] = frame

    def write_prompted(self, slot: int, k: int, frame: int, maskmem: torch.Tensor, ptr: torch.Tensor) -> None:
        self.t.cond_mem[slot, k] = maskmem
        self.t.cond_ptr[slot, k] = ptr
        self.t.cond_frame[slot, k] = frame

    def write_output(self, slot: int, frame: int, logits: torch.Tensor, score: torch.Tensor) -> None:
        i = frame % self.t.out_frame.shape[1]
        self.t.out_logits[slot, i] = logits.reshape(self.t.out_logits.shape[2:])
        self.t.out_score[slot, i] = score.reshape(1)
        self.t.out_frame[slot, i] = frame

    def tracked_frames(self, slot: int) -> tuple[list[int], list[int]]:
        """(frames whose spatial memory, frames whose pointer slot `slot` holds) (reads the device)."""
        mem = [f for f in self.t.mem_frame[slot].tolist() if f != EMPTY]
        ptr = [f for f in self.t.ptr_frame[slot].tolist() if f != EMPTY]
        return sorted(mem), sorted(ptr)

    def sam2_view(self, rec: ObjectRecord, before: int, pos_enc: torch.Tensor, side: int) -> dict:
        """Object `rec`'s memory before frame `before`, as the `output_dict` sam2's track_step reads."""
        t, slot = self.t, rec.slot

        def as_map(tokens: torch.Tensor) -> torch.Tensor:  # [HW, D] -> [1, D, h, w]
            return tokens.transpose(0, 1).reshape(1, -1, side, side)

        cond = {f: {"maskmem_features": as_map(t.cond_mem[slot, k]), "maskmem_pos_enc": [pos_enc],
                    "obj_ptr": t.cond_ptr[slot, k][None]}
                for f, k in rec.cond_slots.items() if f < before}
        mem_frames = t.mem_frame[slot].tolist()
        non_cond = {}
        for i, f in enumerate(t.ptr_frame[slot].tolist()):
            if EMPTY < f < before:
                j = f % len(mem_frames)
                maskmem = as_map(t.mem[slot, j]) if mem_frames[j] == f else None
                non_cond[f] = {"maskmem_features": maskmem, "maskmem_pos_enc": [pos_enc], "obj_ptr": t.ptr[slot, i][None]}
        return {"cond_frame_outputs": cond, "non_cond_frame_outputs": non_cond}

    def output_at(self, slot: int, frame: int) -> torch.Tensor | None:
        """Low-res logits [1, 1, s/4, s/4] of slot's output on `frame`, None if not held (reads the device)."""
        i = frame % self.t.out_frame.shape[1]
        return self.t.out_logits[slot, i][None] if int(self.t.out_frame[slot, i]) == frame else None

    def score_at(self, slot: int, frame: int) -> torch.Tensor:
        return self.t.out_score[slot, frame % self.t.out_frame.shape[1]]

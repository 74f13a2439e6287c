"""The per-frame step of a camera: every tracked object through SAM 2 at once.

`track_objects` runs, for all object slots of a camera in one batch, what sam2's
`track_step` runs for one object on a frame without prompts: memory attention over the
object's memory (masked, fixed slots: see attention.py and memory.py), the mask decoder
and the memory encoder, and writes the frame's memory into the slot rings in place. It
takes the frame index as a device tensor and never reads a tensor's value on the host, so
it has static shapes and no host syncs: `torch.compile(fullgraph=True)` captures it whole.

`render` turns low-resolution logits into what a frame's result carries (source-size masks,
boxes, scores; float logits only when asked), packed in one uint8 tensor so that a frame's
results reach the host in one copy; `unpack` reads it there.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from sam2.modeling.sam2_utils import get_1d_sine_pe

from rtseg.engine import holes
from rtseg.engine.attention import Rope, frame_self_attention, masked_memory_attention, rope_tables
from rtseg.engine.memory import SlotTensors


@dataclass(frozen=True)
class StepConstants:
    """What the step needs besides the model's parameters, computed once per model."""

    side: int  # feature map side (image_size / 16)
    mem_frames: int  # spatial memories of frames t-1..t-mem_frames (sam2: num_maskmem - 1)
    ptr_frames: int  # object pointers of frames t-1..t-ptr_frames (sam2: max_obj_ptrs_in_encoder - 1)
    rope: Rope
    maskmem_pos: torch.Tensor  # [1, D, side, side]: sam2's memory position encoding (a constant)
    maskmem_pos_tokens: torch.Tensor  # [HW, D]

    @classmethod
    def of(cls, model, device: torch.device) -> StepConstants:
        """The model's constants (computed once per model and device, shared by its predictors)."""
        cache = model.__dict__.setdefault("_rtseg_step_constants", {})
        if device not in cache:
            cache[device] = cls._compute(model, device)
        return cache[device]

    @classmethod
    def _compute(cls, model, device: torch.device) -> StepConstants:
        check_supported(model)
        side = model.image_size // 16
        probe = torch.zeros(1, model.mem_dim, side, side, device=device)
        pos = model.memory_encoder.position_encoding(probe).to(probe.dtype)
        return cls(side, model.num_maskmem - 1, model.max_obj_ptrs_in_encoder - 1, rope_tables(model.memory_attention, side, device), pos, pos.flatten(2)[0].t().contiguous())


def check_supported(model) -> None:
    """The batched step implements sam2's memory selection for these settings (every sam2/sam2.1 config)."""
    problems = [name for name, ok in [
        ("max_cond_frames_in_attn == -1", model.max_cond_frames_in_attn == -1),
        ("memory_temporal_stride_for_eval == 1", model.memory_temporal_stride_for_eval == 1),
        ("use_obj_ptrs_in_encoder", model.use_obj_ptrs_in_encoder),
        ("num_maskmem > 0", model.num_maskmem > 0),
    ] if not ok]
    if problems:
        raise NotImplementedError(f"rtseg's batched step needs a SAM 2 model with {', '.join(problems)}")


def _window(t: torch.Tensor, n: int, ring: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Frames t-n..t-1 (oldest first) and their ring indices."""
    frames = t - n + torch.arange(n, device=t.device)
    return frames, frames % ring


def memory_of(model, c: StepConstants, s: SlotTensors, t: torch.Tensor, span: int | None = None):
    """(memory, memory_pos, key_mask, n_ptr_tokens) of every object slot at frame t.

    `span`: no object has tracked frames older than t - span, so older window slots are all
    empty and left out (eager only: it changes the shapes; the compiled step reads the whole window)."""
    n, k, hw, d = s.cond_mem.shape
    tpos = model.maskmem_tpos_enc.reshape(-1, d)  # [num_maskmem, D]; index num_maskmem-1: prompted frames
    wm = c.mem_frames if span is None else max(0, min(c.mem_frames, span))
    frames, idx = _window(t, wm, s.mem.shape[1])
    mem = [s.cond_mem.reshape(n, -1, d), s.mem[:, idx].reshape(n, -1, d)]  # bf16: cat makes them float once
    enc = torch.cat([tpos[-1:].expand(k, d), tpos[:wm].flip(0)])  # prompted: the last; frame t-j: tpos_enc[j-1]
    mem_pos = (c.maskmem_pos_tokens[None] + enc[:, None]).reshape(1, -1, d).expand(n, -1, d)
    mem_valid = torch.cat([s.cond_frame > -1, s.mem_frame[:, idx] == frames], dim=1).repeat_interleave(hw, dim=1)

    wp = c.ptr_frames if span is None else max(0, min(c.ptr_frames, span))
    pframes, pidx = _window(t, wp, s.ptr.shape[1])
    ptr = torch.cat([s.cond_ptr, s.ptr[:, pidx]], dim=1)  # [N, P, C]
    cond_valid = s.cond_frame > -1
    if model.only_obj_ptrs_in_the_past_for_eval:
        cond_valid = cond_valid & (s.cond_frame <= t)
    ptr_valid = torch.cat([cond_valid, s.ptr_frame[:, pidx] == pframes], dim=1)
    dist = torch.cat([t - s.cond_frame, (t - pframes).expand(n, wp)], dim=1)
    dist = torch.where(ptr_valid, dist if model.use_signed_tpos_enc_to_obj_ptrs else dist.abs(), 0)
    ptr_pos = _pointer_pos(model, dist, d)
    split = ptr.shape[-1] // d  # a pointer is `split` tokens of the memory dimension
    ptr_tokens = ptr.reshape(n, -1, d)
    memory = torch.cat([*mem, ptr_tokens], dim=1)
    memory_pos = torch.cat([mem_pos, ptr_pos.repeat_interleave(split, dim=1)], dim=1)
    key_mask = torch.cat([mem_valid, ptr_valid.repeat_interleave(split, dim=1)], dim=1)
    key_mask[:, 0] |= ~key_mask.any(dim=1)  # an empty slot attends to a zero key instead of to nothing (NaN)
    return memory, memory_pos, key_mask, ptr_tokens.shape[1]


def _pointer_pos(model, dist: torch.Tensor, d: int) -> torch.Tensor:
    """sam2's temporal encoding of object pointers `dist` frames away (obj_ptr_tpos_proj of a sine)."""
    if not model.add_tpos_enc_to_obj_ptrs:
        return torch.zeros(*dist.shape, d, device=dist.device)
    t_diff_max = model.max_obj_ptrs_in_encoder - 1
    dim = model.hidden_dim if model.proj_tpos_enc_in_obj_ptrs else d
    return model.obj_ptr_tpos_proj(get_1d_sine_pe(dist / t_diff_max, dim=dim))


def frame_part(model, c: StepConstants, feats: tuple) -> torch.Tensor:
    """What memory attention computes from the frame alone, once for all of its objects."""
    vision_feats, vision_pos, _ = feats
    return frame_self_attention(model.memory_attention, vision_feats[-1].transpose(0, 1),
                                vision_pos[-1].transpose(0, 1), c.rope)


def track_objects(model, c: StepConstants, feats: tuple, shared: torch.Tensor, t: torch.Tensor, s: SlotTensors,
                  span: int | None = None):
    """One frame for every object slot in `s`; returns (low-res logits [N,1,s/4,s/4], scores [N,1]).
    `shared`: `frame_part` of this frame (computed once for all of its objects)."""
    vision_feats, _, feat_sizes = feats
    n = s.cond_frame.shape[0]
    hw, ch = vision_feats[-1].shape[0], vision_feats[-1].shape[2]
    memory, memory_pos, key_mask, n_ptr = memory_of(model, c, s, t, span)
    out = masked_memory_attention(model.memory_attention, shared, memory, memory_pos, key_mask, n_ptr, c.rope)
    pix_feat = out.transpose(1, 2).reshape(n, ch, c.side, c.side)
    high_res = [x.permute(1, 2, 0).reshape(1, x.shape[2], *size).expand(n, -1, -1, -1)
                for x, size in zip(vision_feats[:-1], feat_sizes[:-1])]
    _, _, _, low_res, high_res_masks, obj_ptr, scores = model._forward_sam_heads(
        backbone_features=pix_feat, point_inputs=None, mask_inputs=None, high_res_features=high_res,
        multimask_output=model._use_multimask(False, None))
    maskmem, _ = model._encode_new_memory(
        current_vision_feats=[vision_feats[-1].expand(hw, n, ch)], feat_sizes=feat_sizes,
        pred_masks_high_res=high_res_masks, object_score_logits=scores, is_mask_from_pts=False)
    low_res = fill_mask_holes(model, low_res)
    _write_ring(s.mem, s.mem_frame, t, maskmem.flatten(2).transpose(1, 2).to(torch.bfloat16))
    _write_ring(s.ptr, s.ptr_frame, t, obj_ptr)
    _write_ring(s.out_logits, s.out_frame, t, low_res)
    _write_ring(s.out_score, None, t, scores)
    return low_res, scores


def fill_mask_holes(model, low_res: torch.Tensor) -> torch.Tensor:
    """Small holes filled as sam2's video predictor fills them after track_step (rtseg.engine.holes
    says where): in the logits it outputs and keeps, not in those a tracked frame's memory encodes."""
    if model.fill_hole_area > 0:
        low_res = holes.fill_holes_in_mask_scores(low_res, model.fill_hole_area)
    return low_res


def _write_ring(ring: torch.Tensor, frames: torch.Tensor | None, t: torch.Tensor, value: torch.Tensor) -> None:
    """ring[:, t % size] = value (and its frame index), with the index on the device."""
    i = (t % ring.shape[1]).reshape(1)
    ring.index_copy_(1, i, value.to(ring.dtype).unsqueeze(1))
    if frames is not None:
        frames.index_copy_(1, i, t.reshape(1, 1).expand(frames.shape[0], 1))


# ------------------------------------------------------------------------ results
def render(low_res: torch.Tensor, scores: torch.Tensor, height: int, width: int, logits: bool) -> torch.Tensor:
    """Source-size masks (bit-packed), boxes, scores (and float logits if asked) as one uint8 tensor."""
    full = F.interpolate(low_res.float(), size=(height, width), mode="bilinear", align_corners=False)[:, 0]
    masks = full > 0
    parts = [pack_bits(masks.reshape(masks.shape[0], -1)).reshape(-1), _boxes_of(full).view(torch.uint8).reshape(-1),
             scores.float().reshape(-1).view(torch.uint8)]
    if logits:
        parts.append(full.reshape(-1).view(torch.uint8))
    return torch.cat(parts)


def unpack(buf: np.ndarray, n: int, height: int, width: int, logits: bool):
    """The host side of `render`: (masks, boxes, scores, logits or None)."""
    pixels = height * width
    packed = (pixels + 7) // 8
    at = n * packed
    masks = np.unpackbits(buf[:at].reshape(n, packed), axis=1, count=pixels, bitorder="little")
    masks = masks.view(bool).reshape(n, height, width)  # 0/1 bytes: a bool view, no copy
    boxes = buf[at:at + 16 * n].view(np.float32).reshape(n, 4)
    scores = buf[at + 16 * n:at + 20 * n].view(np.float32)
    full = buf[at + 20 * n:].view(np.float32).reshape(n, height, width) if logits else None
    return masks, boxes, scores, full


def pack_bits(bits: torch.Tensor) -> torch.Tensor:
    """[N, P] bool -> [N, ceil(P/8)] uint8, little bit order (numpy's unpackbits(bitorder='little')).

    Each 8 bools (bytes 0/1) are read as one int64; a multiply gathers the 8 low bits into
    one byte, per 4-byte half so that nothing overflows (one pass, no per-bit loop)."""
    n, p = bits.shape  # the int64 view reads bytes little-endian, as every platform torch runs on
    if p % 8:
        bits = F.pad(bits, (0, 8 - p % 8))
    words = bits.contiguous().view(torch.uint8).reshape(n, -1, 8).view(torch.int64)[..., 0]
    lo, hi = words & 0xFFFFFFFF, words >> 32  # byte i of a half at bit 8i
    gather = 0x10204080  # byte i's bit lands at bit 28 + i
    return ((lo * gather >> 28) & 0xF | ((hi * gather >> 28) & 0xF) << 4).to(torch.uint8)


def _boxes_of(full: torch.Tensor) -> torch.Tensor:
    """[N, H, W] logits -> [N, 4] float32 xyxy of `full > 0` (x1, y1 exclusive); zeros for an empty mask.
    Row and column maxima of the logits (a float reduction, cheaper than `any` on a bool mask). No host sync.
    Logits are finite (a NaN would make its row and column count as empty)."""
    cols, rows = full.amax(dim=1) > 0, full.amax(dim=2) > 0
    w, h = cols.shape[1], rows.shape[1]
    x0 = cols.to(torch.uint8).argmax(dim=1)  # argmax returns the first maximum
    x1 = w - cols.flip(1).to(torch.uint8).argmax(dim=1)
    y0 = rows.to(torch.uint8).argmax(dim=1)
    y1 = h - rows.flip(1).to(torch.uint8).argmax(dim=1)
    boxes = torch.stack([x0, y0, x1, y1], dim=1).float()
    return torch.where(cols.any(dim=1, keepdim=True), boxes, 0.0)


COMPILE_MODES = ("off", "default", "graphs")


def make_frame_step(model, consts: StepConstants, mode: str, device: torch.device, *, chunk: int | None = None,
                    backend=None):
    """frame_step(feats, t, slots, height, width, logits, span) -> packed results; compiled unless mode is "off".

    The objects go through the model `chunk` at a time (None: all at once). "graphs" captures
    CUDA graphs (`mode="reduce-overhead"`); on the CPU it is "default". `backend` (tests):
    dynamo's graph capture (breaks, recompiles) with that backend instead of inductor."""
    if mode not in COMPILE_MODES:
        raise ValueError(f"compile mode {mode!r}: choose one of {', '.join(COMPILE_MODES)}")

    def frame_step(feats, t, slots: SlotTensors, height: int, width: int, logits: bool,
                   span: int | None = None) -> torch.Tensor:
        n = slots.cond_frame.shape[0]
        size = chunk or n
        shared = frame_part(model, consts, feats)
        outs = [track_objects(model, consts, feats, shared, t, slots.rows(a, min(a + size, n)), span)
                for a in range(0, n, size)]
        low_res = torch.cat([o[0] for o in outs]) if len(outs) > 1 else outs[0][0]
        scores = torch.cat([o[1] for o in outs]) if len(outs) > 1 else outs[0][1]
        return render(low_res, scores, height, width, logits)

    if mode == "off":
        return frame_step
    if backend is not None:
        return torch.compile(frame_step, fullgraph=True, dynamic=False, backend=backend)
    graphs = mode == "graphs" and device.type == "cuda"
    return torch.compile(frame_step, fullgraph=True, dynamic=False, mode="reduce-overhead" if graphs else None)


def shared_frame_step(model, mode: str, device: torch.device, chunk: int | None = None):
    """(constants, frame_step) shared by every predictor of `model`: the cameras of a segmenter reuse
    one compiled step (one compilation per capacity and frame size) instead of compiling their own."""
    steps = model.__dict__.setdefault("_rtseg_frame_steps", {})
    key = (mode, chunk, device)
    if key not in steps:
        consts = StepConstants.of(model, device)
        steps[key] = (consts, make_frame_step(model, consts, mode, device, chunk=chunk))
    return steps[key]

"""SAM 2's memory attention for a batch of objects whose memories differ in length.

sam2's `MemoryAttention` takes one memory length for the whole batch, so the official
predictor runs one object at a time. Here every object has the same fixed slots and a key
mask says which hold something: a masked key gets zero attention weight, so each object's
output is what sam2 computes on its own memory (float32 noise, ~1e-6). The layers' own
modules (projections, norms, MLP) and sam2's rotary encoding are used; only the forward is
written out, to pass the mask.

Two things differ from calling sam2's layers once per object, neither in the arithmetic:

- The first layer's self-attention reads only the frame (every object starts from the same
  frame features), so `frame_self_attention` computes it once per frame for all objects.
- The rotary encoding is sam2's own `apply_rotary_enc` (a complex multiply) in eager mode.
  Inside `torch.compile`, which does not take complex tensors, the same products are
  written in real arithmetic (`_rotate`).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from sam2.modeling.position_encoding import apply_rotary_enc


@dataclass(frozen=True)
class Rope:
    """sam2's axial rotary table for a side x side feature map, complex and as (cos, sin)."""

    cis: torch.Tensor  # [HW, head_dim / 2] complex64
    cos: torch.Tensor
    sin: torch.Tensor


def rope_tables(memory_attention, side: int, device: torch.device) -> Rope:
    cis = memory_attention.layers[0].self_attn.compute_cis(end_x=side, end_y=side)  # sam2's, with its theta
    return Rope(cis.to(device), cis.real.contiguous().to(device), cis.imag.contiguous().to(device))


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate channel pairs (x0, x1) by (cos + i sin): apply_rotary_enc's products, in real arithmetic."""
    pairs = x.float().reshape(*x.shape[:-1], -1, 2)
    x0, x1 = pairs.unbind(-1)
    return torch.stack([x0 * cos - x1 * sin, x0 * sin + x1 * cos], dim=-1).flatten(-2).type_as(x)


def _rotary(q: torch.Tensor, k: torch.Tensor, rope: Rope) -> tuple[torch.Tensor, torch.Tensor]:
    """(q, k) rotated as sam2's RoPEAttention rotates them; k holds whole feature maps (repeats of q's)."""
    if not torch.compiler.is_compiling():
        return apply_rotary_enc(q, k, rope.cis, repeat_freqs_k=True)
    repeat = k.shape[2] // rope.cos.shape[0]
    return _rotate(q, rope.cos, rope.sin), _rotate(k, rope.cos.repeat(repeat, 1), rope.sin.repeat(repeat, 1))


def _rope_attention(attn, q, k, v, rope: Rope, n_rope_k: int, key_mask: torch.Tensor | None) -> torch.Tensor:
    q = attn._separate_heads(attn.q_proj(q), attn.num_heads)
    k = attn._separate_heads(attn.k_proj(k), attn.num_heads)
    v = attn._separate_heads(attn.v_proj(v), attn.num_heads)
    q, k_rot = _rotary(q, k[:, :, :n_rope_k], rope)
    k[:, :, :n_rope_k] = k_rot  # keys past n_rope_k (object pointers) are not rotated, as in sam2
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask)
    return attn.out_proj(attn._recombine_heads(out))


def _check_layer(layer) -> None:
    if layer.pos_enc_at_attn or layer.pos_enc_at_cross_attn_queries or not layer.pos_enc_at_cross_attn_keys:
        raise NotImplementedError("memory attention layer with positional encodings other than sam2.1's")


def frame_self_attention(memory_attention, curr: torch.Tensor, curr_pos: torch.Tensor, rope: Rope) -> torch.Tensor:
    """The part of MemoryAttention.forward that reads only the frame: the input and the first
    layer's self-attention. curr, curr_pos: [1, HW, C]; returns [1, HW, C], the same for every object."""
    ma = memory_attention
    out = curr + 0.1 * curr_pos if ma.pos_enc_at_input else curr
    layer = ma.layers[0]
    _check_layer(layer)
    x = layer.norm1(out)
    return out + _rope_attention(layer.self_attn, x, x, x, rope, x.shape[1], None)


def masked_memory_attention(memory_attention, frame_part: torch.Tensor, memory: torch.Tensor,
                            memory_pos: torch.Tensor, key_mask: torch.Tensor, n_ptr_tokens: int,
                            rope: Rope) -> torch.Tensor:
    """sam2's MemoryAttention.forward, batch first, with masked keys, from `frame_self_attention`'s output.

    frame_part: [1 or B, HW, C]; memory, memory_pos: [B, K, D], spatial tokens first (whole
    feature maps), then `n_ptr_tokens` object-pointer tokens; key_mask: [B, K] bool, True
    where a key holds memory. Returns [B, HW, C].
    """
    ma = memory_attention
    mask = key_mask[:, None, None, :]
    n_rope_k = memory.shape[1] - n_ptr_tokens
    keys = memory + memory_pos
    out = frame_part.expand(memory.shape[0], -1, -1)
    for i, layer in enumerate(ma.layers):
        _check_layer(layer)
        if i > 0:
            x = layer.norm1(out)
            out = out + _rope_attention(layer.self_attn, x, x, x, rope, x.shape[1], None)
        x = layer.norm2(out)
        out = out + _rope_attention(layer.cross_attn_image, x, keys, memory, rope, n_rope_k, mask)
        x = layer.norm3(out)
        out = out + layer.linear2(layer.activation(layer.linear1(x)))
    return ma.norm(out)

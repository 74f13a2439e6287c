"""SAM 2's memory attention for a batch of objects whose memories differ in length.

sam2's `MemoryAttention` takes one memory length for the whole batch, so the official
predictor runs one object at a time. Here every object has the same fixed slots and a key
mask says which hold something: a masked key gets zero attention weight, so each object's
output is what sam2 computes on its own memory (float32 noise, ~1e-6). The layers' own
modules (projections, norms, MLP) and sam2's rotary tables are used; only the forward is
written out, to pass the mask and to apply the rotary encoding in real arithmetic (the same
products as sam2's complex multiply) so that the step compiles without complex tensors.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from sam2.modeling.position_encoding import compute_axial_cis


def rope_tables(memory_attention, side: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos, sin) of sam2's axial rotary encoding for a side x side feature map."""
    attn = memory_attention.layers[0].self_attn
    theta = getattr(attn, "rope_theta", 10000.0)
    cis = compute_axial_cis(dim=attn.internal_dim // attn.num_heads, end_x=side, end_y=side, theta=theta)
    return cis.real.contiguous().to(device), cis.imag.contiguous().to(device)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate channel pairs (x0, x1) by (cos + i sin), as sam2's apply_rotary_enc does."""
    pairs = x.float().reshape(*x.shape[:-1], -1, 2)
    x0, x1 = pairs.unbind(-1)
    return torch.stack([x0 * cos - x1 * sin, x0 * sin + x1 * cos], dim=-1).flatten(-2).type_as(x)


def _rope_attention(attn, q, k, v, rope, n_rope_k: int, key_mask: torch.Tensor | None) -> torch.Tensor:
    cos, sin = rope
    q = _rotate(attn._separate_heads(attn.q_proj(q), attn.num_heads), cos, sin)
    k = attn._separate_heads(attn.k_proj(k), attn.num_heads)
    v = attn._separate_heads(attn.v_proj(v), attn.num_heads)
    repeat = n_rope_k // cos.shape[0]  # keys: `repeat` feature maps, then tokens without rotary (pointers)
    k_rot = _rotate(k[:, :, :n_rope_k], cos.repeat(repeat, 1), sin.repeat(repeat, 1))
    k = torch.cat([k_rot, k[:, :, n_rope_k:]], dim=2)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask)
    return attn.out_proj(attn._recombine_heads(out))


def masked_memory_attention(memory_attention, curr: torch.Tensor, curr_pos: torch.Tensor, memory: torch.Tensor,
                            memory_pos: torch.Tensor, key_mask: torch.Tensor, n_ptr_tokens: int,
                            rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """sam2's MemoryAttention.forward, batch first, with masked keys.

    curr, curr_pos: [B, HW, C] (the frame); memory, memory_pos: [B, K, D], spatial tokens
    first (whole feature maps), then `n_ptr_tokens` object-pointer tokens; key_mask: [B, K]
    bool, True where a key holds memory. Returns [B, HW, C].
    """
    ma = memory_attention
    out = curr + 0.1 * curr_pos if ma.pos_enc_at_input else curr
    mask = key_mask[:, None, None, :]
    n_rope_k = memory.shape[1] - n_ptr_tokens
    keys = memory + memory_pos
    for layer in ma.layers:
        if layer.pos_enc_at_attn or layer.pos_enc_at_cross_attn_queries or not layer.pos_enc_at_cross_attn_keys:
            raise NotImplementedError("memory attention layer with positional encodings other than sam2.1's")
        x = layer.norm1(out)
        out = out + _rope_attention(layer.self_attn, x, x, x, rope, x.shape[1], None)
        x = layer.norm2(out)
        out = out + _rope_attention(layer.cross_attn_image, x, keys, memory, rope, n_rope_k, mask)
        x = layer.norm3(out)
        out = out + layer.linear2(layer.activation(layer.linear1(x)))
    return ma.norm(out)

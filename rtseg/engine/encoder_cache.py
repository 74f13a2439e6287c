"""What sam2's image encoder recomputes on every frame although only the weights and the
input size decide it: Hiera's position embedding (a bicubic interpolation of the learned
embedding plus the tiled window embedding, about 9 ms per frame on a CPU at image_size 512).

`cache_position_embedding(model)` wraps the trunk's own `_get_pos_embed` so that it runs once
per input size and weights: the cached tensor is what sam2 would compute (the same call).
The cache is keyed on the parameters' version counters, so loading other weights recomputes
it, and it is bypassed while gradients are on (training sees sam2's code path unchanged).
"""
from __future__ import annotations

import torch


class CachedPositionEmbedding:
    """A stand-in for `Hiera._get_pos_embed` that computes each input size once."""

    def __init__(self, trunk):
        self.trunk = trunk
        self.compute = trunk._get_pos_embed  # sam2's bound method
        self.cache: dict[tuple, tuple[torch.Tensor, tuple]] = {}  # key -> (embedding, its weights)

    def _params(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.trunk.pos_embed, self.trunk.pos_embed_window

    def _key(self, hw) -> tuple:
        params = self._params()
        device = self.trunk.pos_embed.device.type
        return (tuple(int(x) for x in hw), torch.is_inference_mode_enabled(), torch.is_autocast_enabled(device),
                torch.get_autocast_dtype(device), *((p.device, p.dtype, p._version, p.data_ptr()) for p in params))

    def __call__(self, hw) -> torch.Tensor:
        if torch.is_grad_enabled() or torch.compiler.is_compiling():  # training, or traced: sam2's path
            return self.compute(hw)
        key = self._key(hw)
        entry = self.cache.get(key)
        if entry is None:
            if len(self.cache) >= 8:  # other sizes or stale weights: start over
                self.cache.clear()
            # the entry holds the weights it was computed from, so their memory cannot be reused by
            # other weights with the same address and version (e.g. after `param.data = new`)
            entry = (self.compute(hw), tuple(p.detach() for p in self._params()))
            self.cache[key] = entry
        return entry[0]


def cache_position_embedding(model) -> None:
    """Cache the position embedding of `model`'s Hiera trunk (a no-op for other encoders)."""
    trunk = getattr(model.image_encoder, "trunk", None)
    if trunk is None or not hasattr(trunk, "pos_embed_window") or isinstance(
            trunk.__dict__.get("_get_pos_embed"), CachedPositionEmbedding):
        return
    trunk._get_pos_embed = CachedPositionEmbedding(trunk)

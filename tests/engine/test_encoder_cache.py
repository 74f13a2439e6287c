"""Hiera's position embedding is computed once per input size and weights, and equals sam2's."""
import torch

from rtseg.engine.build import build_sam2_video_model
from rtseg.engine.encoder_cache import CachedPositionEmbedding
from rtseg.engine.models import model_spec


def _model():
    torch.manual_seed(0)
    return build_sam2_video_model(model_spec("sam2.1_hiera_t"), None, torch.device("cpu"), 64)


def _counting(trunk) -> list:
    cached = trunk._get_pos_embed
    assert isinstance(cached, CachedPositionEmbedding)
    calls, compute = [], cached.compute
    cached.compute = lambda hw: calls.append(tuple(hw)) or compute(hw)
    return calls


def test_once_per_size_and_equal_to_sam2s_own():
    model = _model()
    trunk = model.image_encoder.trunk
    calls = _counting(trunk)
    image = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        first = model.forward_image(image)
        second = model.forward_image(image)
        assert len(calls) == 1  # the second frame reused it
        del trunk._get_pos_embed  # sam2's own method again
        plain = model.forward_image(image)
    for a, b, c in zip(first["backbone_fpn"], second["backbone_fpn"], plain["backbone_fpn"]):
        assert torch.equal(a, c) and torch.equal(b, c)


def test_new_weights_and_gradients_recompute():
    model = _model()
    trunk = model.image_encoder.trunk
    calls = _counting(trunk)
    with torch.inference_mode():
        before = trunk._get_pos_embed((16, 16)).clone()
        trunk._get_pos_embed((16, 16))
    assert len(calls) == 1
    with torch.no_grad():
        trunk.pos_embed.add_(1.0)  # e.g. another checkpoint loaded into the same model
    with torch.inference_mode():
        after = trunk._get_pos_embed((16, 16))
    assert len(calls) == 2 and not torch.equal(before, after)
    with torch.inference_mode():
        trunk._get_pos_embed((8, 8))  # another input size
    assert len(calls) == 3
    trunk.pos_embed.data = torch.zeros_like(trunk.pos_embed)  # new weights, the version counter unchanged
    with torch.inference_mode():
        zeroed = trunk._get_pos_embed((16, 16))
    assert len(calls) == 4 and not torch.equal(zeroed, after)
    trunk._get_pos_embed((16, 16))  # gradients on: sam2's code path, every call
    trunk._get_pos_embed((16, 16))
    assert len(calls) == 6

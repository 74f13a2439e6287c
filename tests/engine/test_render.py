"""A frame's results packed on the device and read back on the host (rtseg.engine.step.render/unpack)."""
import numpy as np
import pytest
import torch

from rtseg.engine.step import pack_bits, render, unpack


@pytest.mark.parametrize("pixels", [1, 7, 8, 9, 63, 64, 1000, 720 * 1280])
def test_pack_bits_matches_numpy_packbits(pixels):
    bits = torch.rand(3, pixels, generator=torch.Generator().manual_seed(pixels)) > 0.5
    bits[0] = True  # every bit of every byte set: the gather must not carry into a neighbour
    expected = np.packbits(bits.numpy(), axis=1, bitorder="little")
    assert np.array_equal(pack_bits(bits).numpy(), expected)


def test_render_round_trip_masks_boxes_scores_logits():
    low = torch.full((3, 1, 16, 16), -5.0)
    low[0, 0, 2:6, 3:9] = 5.0  # a rectangle
    low[1, 0, :, :] = 5.0  # the whole frame: the box touches every border
    # object 2: empty
    scores = torch.tensor([[1.5], [2.5], [-3.0]])
    h, w = 37, 61  # odd sizes: the packed masks end inside a byte
    buf = render(low, scores, h, w, logits=True)
    masks, boxes, got_scores, full = unpack(buf.numpy(), 3, h, w, logits=True)
    assert masks.dtype == bool and masks.shape == (3, h, w)
    assert np.array_equal(masks, full > 0)
    assert masks[0].any() and masks[1].all() and not masks[2].any()
    ys, xs = np.nonzero(masks[0])
    assert boxes[0].tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    assert boxes[1].tolist() == [0, 0, w, h]
    assert boxes[2].tolist() == [0, 0, 0, 0]
    assert got_scores.tolist() == [1.5, 2.5, -3.0]

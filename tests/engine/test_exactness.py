"""The streaming engine computes exactly what sam2's offline SAM2VideoPredictor computes.

CPU, float32, random weights with the object-score head forced to 'present' (see
tests/helpers/engine.py), tiny model at image_size 256, a 42-frame clip: A is prompted with
points at frame 0, B with a box at frame 12 while A keeps tracking, C with a mask at frame 20,
and D is added at frame 8 and removed at frame 15. Each object's logits on every frame must
equal those of `propagate_in_video` run from that object's own prompt frame on the same
preprocessed frames. Hole filling is on on both sides (tests/helpers/exactness.py says how
the official predictor is made to fill on the CPU), and the test checks it filled pixels.
"""
from __future__ import annotations

import pytest

from rtseg.engine import holes
from tests.helpers.engine import make_clip, write_test_checkpoint
from tests.helpers.exactness import IMAGE_SIZE, N_FRAMES, PROMPTS, compare, run_official, run_streaming

TOL = 1e-4  # CPU float32 noise is ~5e-7 (1 vs 2 threads); a pointer window of 8 instead of 16 shows as ~9e-4


@pytest.fixture(scope="module")
def clip():
    return make_clip(N_FRAMES)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_test_checkpoint(tmp_path_factory.mktemp("ckpt") / "test.pt", IMAGE_SIZE)


@pytest.fixture(scope="module")
def official_logits(checkpoint, clip, tmp_path_factory):
    frames, gt = clip
    return run_official(checkpoint, frames, gt, tmp_path_factory.mktemp("official"))


def test_streaming_equals_official_propagation(checkpoint, clip, official_logits, monkeypatch):
    frames, gt = clip
    filled = []  # pixels each call of the hole filling changed: the comparison covers filling only if > 0
    fill = holes.fill_holes_in_mask_scores
    monkeypatch.setattr(holes, "fill_holes_in_mask_scores",
                        lambda m, area: filled.append(int((out := fill(m, area)).ne(m).sum())) or out)
    ours = run_streaming(checkpoint, frames, gt)
    assert sum(filled) > 100, f"hole filling changed only {sum(filled)} pixels: the test does not cover it"
    assert sorted(ours) == [1, 2, 3, 4]
    assert sorted(ours[4]) == list(range(8, 16)), "a removed object must stop producing masks"
    for obj_id, (at, _) in PROMPTS.items():
        ref = official_logits[obj_id]
        assert sorted(ours[obj_id]) == sorted(ref) == list(range(at, N_FRAMES))
        for f in ref:
            assert (ref[f] > 0).any(), f"reference mask of object {obj_id} empty at frame {f}: test is vacuous"
            assert ref[f].min() > -1000, "no-object logits (-1024): test checkpoint not applied"
            diff, flips = compare(ours[obj_id][f], ref[f], TOL)
            assert diff <= TOL, f"object {obj_id} frame {f}: max |Δlogit| {diff:.2e} > {TOL}"
            assert flips == 0, f"object {obj_id} frame {f}: {flips} mask pixels differ"


def test_comparison_detects_a_short_pointer_window(checkpoint, clip, official_logits):
    """The forks' 8-frame pointer window is measurably not SAM 2: this suite would catch it."""
    frames, gt = clip
    ours = run_streaming(checkpoint, frames, gt, ptr_window=8)
    worst = max(compare(ours[1][f], official_logits[1][f], TOL)[0] for f in official_logits[1])
    assert worst > TOL, f"a wrong memory window went unnoticed (max |Δlogit| {worst:.2e})"

"""StreamingPredictor behaviour: bounded memory, corrections that stick, prompts on earlier
held frames, and prompt errors that change nothing. Tiny model, CPU, small image_size."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from rtseg.engine import FrameResult, PromptError, StreamingPredictor
from tests.helpers.engine import MODEL, make_clip, write_test_checkpoint

IMAGE_SIZE = 128  # same code paths as 1024, ~0.05 s a frame on two cores


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_test_checkpoint(tmp_path_factory.mktemp("ckpt") / "test128.pt", IMAGE_SIZE)


@pytest.fixture(scope="module")
def clip():
    return make_clip(60, 90, 120)


def build(checkpoint, **kw) -> StreamingPredictor:
    return StreamingPredictor.build(MODEL, checkpoint=checkpoint, device="cpu", image_size=IMAGE_SIZE, **kw)


def test_frame_result_shapes(checkpoint, clip):
    frames, _ = clip
    pred = build(checkpoint)
    empty = pred.track(frames[0])
    assert isinstance(empty, FrameResult) and empty.obj_ids == [] and empty.masks.shape == (0, 90, 120)
    r = pred.add_prompt(5, box=[10, 20, 60, 70], logits=True)
    assert r.frame_index == 0 and r.obj_ids == [5]
    assert r.masks.shape == r.logits.shape == (1, 90, 120)
    assert r.masks.dtype == bool and r.logits.dtype == np.float32
    assert r.object_scores.shape == (1,) and r.boxes.shape == (1, 4)
    assert r.masks.any(), "forced-object checkpoint must give a non-empty mask"
    ys, xs = np.nonzero(r.masks[0])
    assert r.boxes[0].tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    np.testing.assert_array_equal(r.masks, r.logits > 0)
    r1 = pred.track(torch.from_numpy(frames[1]))  # a uint8 torch tensor works as well as numpy
    assert r1.frame_index == 1 and r1.obj_ids == [5]
    assert r1.logits is None, "full-size float logits only when asked for"
    r2 = pred.track(frames[2], logits=True)
    np.testing.assert_array_equal(r2.masks, r2.logits > 0)
    ys, xs = np.nonzero(r2.masks[0])
    assert r2.boxes[0].tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


@pytest.mark.timeout(1800)  # ~60 s on two idle cores; 949 s measured at a load average of ~18
def test_memory_is_bounded_on_a_long_stream(checkpoint, clip):
    frames, _ = clip
    pred = build(checkpoint)
    sizes = {}
    for i in range(1000):
        pred.track(frames[i % len(frames)])
        if i == 0:
            pred.add_prompt(1, points=[[40, 50]], labels=[1])
        if i == 3:
            pred.add_prompt(2, box=[70, 40, 115, 80])
        if i == 10:
            pred.add_prompt(1, points=[[60, 30]], labels=[0])  # one correction each
        if i == 12:
            pred.add_prompt(2, points=[[90, 60]], labels=[1])
        if i + 1 in (40, 1000):
            sizes[i + 1] = pred.state_nbytes()
    assert sizes[40] == sizes[1000] > 0
    # exactly what SAM 2 reads next (frame t+1, or a correction on frame t): the prompt and the
    # correction, pointers of frames t-15..t, spatial memories of frames t-6..t
    t = pred.frame_index
    for obj in pred._objects.values():
        assert sorted(obj.cond_slots) == sorted({obj.init_frame, *obj.corrections}) and len(obj.cond_slots) == 2
        mem, ptr = pred.memory.tracked_frames(obj.slot)
        assert ptr == list(range(t - 15, t + 1)) and mem == list(range(t - 6, t + 1))


def test_correction_changes_its_frame_and_the_following(checkpoint, clip):
    frames, _ = clip
    runs = {}
    for corrected in (False, True):
        pred = build(checkpoint)
        out = []
        for i in range(20):
            r = pred.track(frames[i], logits=True)
            if i == 0:
                r = pred.add_prompt(1, points=[[40, 50]], labels=[1], logits=True)
            if i == 8 and corrected:
                r = pred.add_prompt(1, points=[[40, 60], [20, 20]], labels=[1, 0], logits=True)
            out.append(r.logits[0])
        runs[corrected] = (out, pred)
    plain, fixed = runs[False][0], runs[True][0]
    for i in range(8):
        np.testing.assert_array_equal(plain[i], fixed[i])  # before the correction: untouched
    for i in range(8, 20):
        assert np.abs(plain[i] - fixed[i]).max() > 1e-3, f"correction had no effect on frame {i}"
    assert 8 in runs[True][1]._objects[1].cond_slots  # it sticks: kept as conditioning memory


def test_corrections_are_capped_oldest_first(checkpoint, clip):
    frames, _ = clip
    pred = build(checkpoint, max_corrections=2)
    pred.track(frames[0])
    pred.add_prompt(1, points=[[40, 50]], labels=[1])
    for i in range(1, 6):
        pred.track(frames[i])
        pred.add_prompt(1, points=[[40 + i, 50]], labels=[1])
    obj = pred._objects[1]
    assert sorted(obj.cond_slots) == [0, 4, 5]  # first prompt + the two newest corrections
    held = sorted(f for f in pred.memory.t.cond_frame[obj.slot].tolist() if f >= 0)
    assert held == [0, 4, 5] and pred.memory.prompt_capacity == 3  # 1, 2, then 4 capped at 1 + max_corrections


def test_prompt_on_an_earlier_held_frame_equals_prompting_it_live(checkpoint, clip):
    """A click that arrives late (on frame 7 while frame 10 is latest) gives the same masks
    as if it had arrived while frame 7 was the latest."""
    frames, _ = clip
    live = build(checkpoint, history=5)
    late = build(checkpoint, history=5)
    for i in range(11):
        r_live = live.track(frames[i], logits=True)
        late.track(frames[i], logits=True)
        if i == 0:
            live.add_prompt(1, points=[[40, 50]], labels=[1])
            late.add_prompt(1, points=[[40, 50]], labels=[1])
        if i == 7:
            at7_live = live.add_prompt(2, box=[70, 40, 115, 80], logits=True)
    at7_late = late.add_prompt(2, box=[70, 40, 115, 80], frame_index=7, logits=True)
    assert at7_late.frame_index == 7
    np.testing.assert_array_equal(at7_late.logits, at7_live.logits)
    r_late = late.track(frames[11], logits=True)
    r_live = live.track(frames[11], logits=True)
    assert r_late.obj_ids == r_live.obj_ids == [1, 2]
    # frames 8..10 re-tracked one object at a time vs in the batch: the same up to float32 noise
    np.testing.assert_allclose(r_late.logits, r_live.logits, rtol=0, atol=1e-4)
    with pytest.raises(PromptError, match="not held"):
        late.add_prompt(2, points=[[1, 1]], labels=[1], frame_index=6)  # 7..11 held now


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(points=[[float("nan"), 3]], labels=[1]), "finite"),
        (dict(points=[[500, 3]], labels=[1]), "outside the 120x90 frame"),
        (dict(points=[[-1, 3]], labels=[1]), "outside"),
        (dict(points=[[5, 3]], labels=[2]), "labels must be 1"),
        (dict(points=[[5, 3], [6, 6]], labels=[1]), "one label per point"),
        (dict(points=[[5, 3]]), "go together"),
        (dict(box=[50, 10, 40, 60]), "empty"),
        (dict(box=[10, 10, 40]), r"\[x0, y0, x1, y1\]"),
        (dict(mask=np.ones((10, 10), bool)), r"expected \(90, 120\)"),
        (dict(mask=np.zeros((90, 120), bool)), "mask is empty"),
        (dict(), "needs points"),
        (dict(points=[[5, 3]], labels=[1], frame_index=99), "not held"),
    ],
)
def test_bad_prompts_are_rejected_and_change_nothing(checkpoint, clip, kwargs, match):
    frames, _ = clip
    pred = build(checkpoint)
    pred.track(frames[0])
    pred.add_prompt(1, points=[[40, 50]], labels=[1])
    before = (pred.obj_ids, pred.state_nbytes(), pred._objects[1].point_inputs[0]["point_coords"].clone())
    memory = [x.clone() for x in pred.memory.t]
    with pytest.raises(PromptError, match=match):
        pred.add_prompt(1, **kwargs)
    with pytest.raises(PromptError, match=match):
        pred.add_prompt(7, **kwargs)  # a new object is not created either
    assert (pred.obj_ids, pred.state_nbytes()) == before[:2]
    assert torch.equal(pred._objects[1].point_inputs[0]["point_coords"], before[2])
    assert all(torch.equal(a, b) for a, b in zip(memory, pred.memory.t))


def test_other_prompt_errors(checkpoint, clip):
    frames, _ = clip
    pred = build(checkpoint)
    with pytest.raises(PromptError, match="no frame tracked yet"):
        pred.add_prompt(1, points=[[1, 1]], labels=[1])
    pred.track(frames[0])
    with pytest.raises(PromptError, match="no such object"):
        pred.remove_object(3)
    with pytest.raises(PromptError, match="obj_id must be an integer"):
        pred.add_prompt("a", points=[[1, 1]], labels=[1])
    assert issubclass(PromptError, ValueError)


def test_remove_and_reset(checkpoint, clip):
    frames, _ = clip
    pred = build(checkpoint)
    pred.track(frames[0])
    pred.add_prompt(1, points=[[40, 50]], labels=[1])
    pred.add_prompt(2, box=[70, 40, 115, 80])
    pred.remove_object(1)
    assert pred.obj_ids == [2] and pred.track(frames[1]).obj_ids == [2]
    allocated = pred.state_nbytes()
    pred.reset()
    assert pred.obj_ids == [] and pred.state_nbytes() == allocated > 0 and pred.frame_index == -1
    assert pred.track(frames[2]).frame_index == 0

"""The per-frame step compiles whole and stays compiled; memory is static and grows once.

`torch.compile(fullgraph=True)` fails on any graph break; a backend that counts what dynamo
hands it sees every (re)compilation. Dynamo's capture (breaks, guards, recompiles) does not
depend on the backend, so the long run uses a backend that runs the captured graph as is;
one short run compares the compiled step (AOTAutograd) with the eager one. Image size 64:
the same code paths as 1024 (the step's shapes scale, its graph does not).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from rtseg.engine import StreamingPredictor
from rtseg.engine.build import build_sam2_video_model
from rtseg.engine.models import model_spec
from rtseg.engine.step import make_frame_step
from tests.helpers.engine import MODEL, assert_results_consistent, make_clip

IMAGE_SIZE = 64


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = build_sam2_video_model(model_spec(MODEL), None, torch.device("cpu"), IMAGE_SIZE)
    with torch.no_grad():  # the object-score head says "present": real logits, not -1024 everywhere
        m.sam_mask_decoder.pred_obj_score_head.layers[-1].bias.fill_(20.0)
    return m


@pytest.fixture(scope="module")
def clip():
    return make_clip(40, 90, 120)[0]


# frame -> (action, obj_id, prompt): adds, corrections, a removal and a re-add, all within capacity
EVENTS = {
    0: ("prompt", 1, dict(points=[[40, 50]], labels=[1])),
    5: ("prompt", 2, dict(box=[70, 40, 115, 80])),
    30: ("prompt", 3, dict(points=[[100, 20]], labels=[1])),
    60: ("prompt", 1, dict(points=[[60, 30]], labels=[0])),  # correction
    100: ("prompt", 2, dict(points=[[90, 60]], labels=[1])),  # correction
    150: ("remove", 1, None),
    200: ("prompt", 1, dict(box=[10, 10, 60, 60])),  # the id again, a new object
    250: ("prompt", 4, dict(points=[[20, 70]], labels=[1])),
}


def play(pred: StreamingPredictor, frames, n: int, events=EVENTS, logits: bool = False) -> list:
    results = []
    for i in range(n):
        r = pred.track(frames[i % len(frames)], logits=logits)
        action, obj_id, prompt = events.get(i, (None, None, None))
        if action == "prompt":
            r = pred.add_prompt(obj_id, logits=logits, **prompt)
        elif action == "remove":
            pred.remove_object(obj_id)
        results.append(r)
    return results


@pytest.mark.timeout(1200)  # ~1 min on two idle cores
def test_step_compiles_whole_and_never_recompiles_over_300_frames(model, clip):
    torch._dynamo.reset()
    graphs = []

    def counting_backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    pred = StreamingPredictor(model, compile="default", objects=4, prompts=2)
    pred._frame_step = make_frame_step(model, pred.consts, "default", pred.device, backend=counting_backend)
    nbytes = pred.state_nbytes()
    results = play(pred, clip, 300)
    assert len(graphs) == 1, f"the step was compiled {len(graphs)} times (recompiles: {len(graphs) - 1})"
    from torch._dynamo.utils import counters

    assert not counters["graph_break"], dict(counters["graph_break"])
    assert pred.state_nbytes() == nbytes, "memory must not grow within capacity"
    assert [r.obj_ids for r in results[298:]] == [[2, 3, 1, 4]] * 2
    assert all(r.masks.any() for r in results[290:])
    # growing a capacity recompiles once, and only then
    pred.add_prompt(5, points=[[30, 30]], labels=[1])
    assert pred.memory.object_capacity == 8 and pred.state_nbytes() > nbytes
    play(pred, clip, 3, events={})
    assert len(graphs) == 2


GROWTH_EVENTS = {
    0: ("prompt", 1, dict(points=[[40, 50]], labels=[1])),
    4: ("prompt", 2, dict(box=[70, 40, 115, 80])),
    8: ("prompt", 1, dict(points=[[60, 30]], labels=[0])),
    12: ("prompt", 3, dict(points=[[100, 20]], labels=[1])),
    16: ("remove", 2, None),  # object 3 moves into object 2's slot
    20: ("prompt", 5, dict(points=[[20, 70]], labels=[1])),
}


def test_growing_capacity_keeps_every_object_exactly(model, clip):
    """Objects beyond the initial capacity double it once; what was stored moves along unchanged."""
    runs = {}
    for capacity in (1, 4):
        pred = StreamingPredictor(model, objects=capacity, prompts=1)
        sizes = [pred.state_nbytes()]
        runs[capacity] = play(pred, clip, 30, events=GROWTH_EVENTS, logits=True)
        sizes.append(pred.state_nbytes())
        if capacity == 1:  # 1 -> 2 (object 2) -> 4 (object 3); the correction of object 1 -> 2 prompt slots
            assert (pred.memory.object_capacity, pred.memory.prompt_capacity) == (4, 2) and sizes[1] > sizes[0]
    for small, large in zip(runs[1], runs[4]):
        assert small.obj_ids == large.obj_ids
        np.testing.assert_array_equal(small.logits, large.logits)


@pytest.mark.timeout(1200)
def test_compiled_step_equals_eager(model, clip):
    """Through AOTAutograd (the functionalized graph with its in-place memory writes, what inductor
    lowers). Inductor itself takes 5-20 minutes to compile the step on these two CPU cores, too
    long for the suite: `python tools/check_compiled_step.py` runs the same comparison with it."""
    torch._dynamo.reset()
    eager = play(StreamingPredictor(model, objects=2, prompts=2), clip, 8, logits=True)
    pred = StreamingPredictor(model, compile="default", objects=2, prompts=2)
    pred._frame_step = make_frame_step(model, pred.consts, "default", pred.device, backend="aot_eager")
    compiled = play(pred, clip, 8, logits=True)
    assert [r.obj_ids for r in compiled] == [r.obj_ids for r in eager] and compiled[-1].obj_ids == [1, 2]
    worst = max(float(np.abs(c.logits - e.logits).max()) for c, e in zip(compiled, eager))
    assert worst <= 1e-4, f"compiled vs eager: max |Δlogit| {worst:.2e}"
    for result in compiled:  # the compiled render: bit-packed masks and boxes read back right
        assert_results_consistent(result)

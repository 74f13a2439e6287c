"""The engine on CUDA: exact against sam2's predictor, bf16 close to fp32, everything on its own GPU.

Marked `cuda`: run where CUDA is (tests/conftest.py skips them elsewhere; tools/gpu_check.sh
runs them on the GPU machine). Not yet run on a GPU at the time of writing (README says so).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from rtseg.engine import StreamingPredictor
from rtseg.engine.build import resolve_device
from rtseg.engine.precision import choose_precision
from tests.helpers.engine import MODEL, make_clip, write_test_checkpoint
from tests.helpers.exactness import IMAGE_SIZE, N_FRAMES, PROMPTS, compare, run_official, run_streaming

pytestmark = pytest.mark.cuda

TOL = 1e-3  # fp32 with TF32 off: cuBLAS/cuDNN kernel choices differ more than the CPU's 1-vs-2-thread noise


@pytest.fixture(scope="module")
def clip():
    return make_clip(N_FRAMES)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_test_checkpoint(tmp_path_factory.mktemp("ckpt") / "test.pt", IMAGE_SIZE)


@pytest.fixture
def no_tf32():
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def test_fp32_on_cuda_equals_official_on_cuda(checkpoint, clip, tmp_path, no_tf32):
    frames, gt = clip
    ref = run_official(checkpoint, frames, gt, tmp_path, device="cuda")
    ours = run_streaming(checkpoint, frames, gt, device="cuda", precision="fp32")
    worst = 0.0
    for obj_id, (at, _) in PROMPTS.items():
        assert sorted(ours[obj_id]) == sorted(ref[obj_id]) == list(range(at, N_FRAMES))
        for f in ref[obj_id]:
            assert (ref[obj_id][f] > 0).any(), f"reference mask of object {obj_id} empty at frame {f}"
            diff, flips = compare(ours[obj_id][f], ref[obj_id][f], TOL)
            worst = max(worst, diff)
            assert diff <= TOL and flips == 0, f"object {obj_id} frame {f}: |Δlogit| {diff:.2e}, {flips} flips"
    print(f"fp32 on CUDA: max |Δlogit| against official {worst:.2e}")


def test_bf16_masks_match_fp32(checkpoint, clip, no_tf32):
    frames, gt = clip
    chosen = choose_precision("auto", torch.device("cuda", 0))
    assert chosen.name == ("bf16" if torch.cuda.get_device_capability(0) >= (8, 0) else "fp16")
    full = run_streaming(checkpoint, frames, gt, device="cuda", precision="fp32")
    low = run_streaming(checkpoint, frames, gt, device="cuda", precision=chosen.name)
    for obj_id in PROMPTS:
        a = np.stack([full[obj_id][f] > 0 for f in sorted(full[obj_id])])
        b = np.stack([low[obj_id][f] > 0 for f in sorted(full[obj_id])])
        iou = (a & b).sum() / max(1, (a | b).sum())
        print(f"object {obj_id}: {chosen.name} vs fp32 mask IoU {iou:.4f}")
        assert iou >= 0.99, f"object {obj_id}: {chosen.name} mask IoU {iou:.4f} against fp32 < 0.99"


def test_bf16_masks_match_official_bf16_on_every_frame(checkpoint, clip, tmp_path):
    """Issue #11: at the production precision, the batched step's masks against sam2's own
    predictor at that precision, per object and frame: IoU >= 0.99."""
    frames, gt = clip
    chosen = choose_precision("auto", torch.device("cuda", 0))
    ref = run_official(checkpoint, frames, gt, tmp_path, device="cuda", precision=chosen)
    ours = run_streaming(checkpoint, frames, gt, device="cuda", precision=chosen.name)
    worst = 1.0
    for obj_id, (at, _) in PROMPTS.items():
        assert sorted(ours[obj_id]) == sorted(ref[obj_id]) == list(range(at, N_FRAMES))
        for f in ref[obj_id]:
            a, b = ours[obj_id][f] > 0, ref[obj_id][f] > 0
            assert b.any(), f"reference mask of object {obj_id} empty at frame {f}"
            union = int((a | b).sum())
            iou = 1.0 if union == 0 else int((a & b).sum()) / union
            worst = min(worst, iou)
            assert iou >= 0.99, f"object {obj_id} frame {f}: {chosen.name} mask IoU {iou:.4f} against official < 0.99"
    print(f"{chosen.name} on CUDA: worst per-frame mask IoU against official {chosen.name}: {worst:.4f}")


def test_auto_is_the_first_gpu():
    assert resolve_device("auto") == torch.device("cuda", 0)


@pytest.mark.cuda(gpus=2)
def test_cuda_1_allocates_nothing_on_gpu_0(checkpoint):
    """sam2 builds caches on the current device: the predictor makes cuda:1 current while it works."""
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated(0)
    pred = StreamingPredictor.build(MODEL, checkpoint=checkpoint, device="cuda:1", image_size=IMAGE_SIZE)
    frames, _ = make_clip(4)
    pred.track(frames[0])
    pred.add_prompt(1, box=[146, 100, 202, 140])
    for f in frames[1:]:
        pred.track(f)
    torch.cuda.synchronize()
    assert torch.cuda.current_device() == 0, "the predictor must not change the caller's current device"
    assert torch.cuda.memory_allocated(0) == before, "memory allocated on cuda:0 by a predictor on cuda:1"
    assert torch.cuda.memory_allocated(1) > 0

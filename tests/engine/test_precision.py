"""Precision: chosen once per device, one autocast context held across frames.

Which precision `auto` picks is decided by the device's compute capability, passed in here,
so every branch runs on any machine; the autocast behaviour runs for real on the CPU (bf16).
"""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from rtseg.engine import StreamingPredictor
from rtseg.engine.precision import Precision, PrecisionError, choose_precision
from tests.helpers.engine import MODEL, make_clip

CPU, GPU = torch.device("cpu"), torch.device("cuda", 1)


@pytest.mark.parametrize("capability, expected", [((9, 0), "bf16"), ((8, 0), "bf16"), ((7, 5), "fp16"),
                                                  ((7, 0), "fp16"), ((6, 1), "fp32")])
def test_auto_on_a_gpu_follows_its_compute_capability(capability, expected):
    chosen = choose_precision("auto", GPU, capability)
    assert chosen.name == expected and chosen.device_type == "cuda"
    assert f"{capability[0]}.{capability[1]}" in chosen.reason


def test_auto_on_the_cpu_is_fp32_and_an_explicit_choice_is_kept():
    assert choose_precision("auto", CPU).name == "fp32"
    assert choose_precision("fp16", GPU, (8, 6)).name == "fp16"
    assert choose_precision("fp32", GPU, (9, 0)).name == "fp32"
    assert choose_precision("bf16", CPU).dtype == torch.bfloat16


def test_bf16_on_a_gpu_without_it_is_refused_with_what_to_use():
    with pytest.raises(PrecisionError, match=r"bf16 needs compute capability >= 8.0.*7.5.*use fp16"):
        choose_precision("bf16", GPU, (7, 5))
    with pytest.raises(PrecisionError, match="choose one of auto, bf16, fp16, fp32"):
        choose_precision("fp8", CPU)


def test_the_choice_is_logged_with_its_reason(caplog):
    with caplog.at_level(logging.INFO, logger="rtseg.engine.precision"):
        choose_precision("auto", GPU, (9, 0))
    assert [r.getMessage() for r in caplog.records] == [
        "precision bf16 (auto: cuda:1 (compute capability 9.0) has native bf16)"]


def test_autocast_context_of_each_precision():
    with Precision("fp32", "cpu", "").autocast():
        assert not torch.is_autocast_enabled("cpu")
    with Precision("bf16", "cpu", "").autocast():
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16


def test_an_outer_context_keeps_the_weight_cache_across_frames(monkeypatch):
    """track() enters autocast itself; held outside, leaving track() no longer drops the cast weights."""
    pred = StreamingPredictor.build(MODEL, device="cpu", image_size=128, precision="bf16")
    frames, _ = make_clip(3, 96, 128)
    cleared = []
    real_clear = torch.clear_autocast_cache
    monkeypatch.setattr(torch, "clear_autocast_cache", lambda: (cleared.append(1), real_clear()))
    pred.track(frames[0])
    assert len(cleared) == 1, "a bare track() enters and leaves autocast: the cache goes"
    with pred.precision.autocast():
        pred.track(frames[1])
        pred.add_prompt(1, box=[10, 10, 60, 50])
        result = pred.track(frames[2], logits=True)
        assert len(cleared) == 1, "inside an outer context the cache must survive every frame"
    assert len(cleared) == 2
    assert result.logits.dtype == np.float32 and result.masks.shape == (1, 96, 128)

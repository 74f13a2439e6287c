"""The segmenter builds its engine on the configured GPU, precision and hole filling, once."""
from __future__ import annotations

import logging

import pytest
import torch

from rtseg.config import Config
from rtseg.pipeline.segmenter import build_predictors, gpu_memory


def config(**engine) -> Config:
    return Config.model_validate({
        "cameras": [{"id": "a", "source": "synthetic://64x48"}, {"id": "b", "source": "synthetic://64x48"}],
        "model": {"name": "sam2.1_hiera_t", "image_size": 128, "weights": "random", "device": "cpu"},
        "engine": engine,
    })


def test_one_model_one_precision_chosen_and_logged_once(caplog):
    with caplog.at_level(logging.INFO):
        preds, device = build_predictors(config(precision="fp32", fill_holes=False), None)
    assert device == "cpu" and sorted(preds) == ["a", "b"]
    a, b = preds["a"], preds["b"]
    assert a.model is b.model and a.precision is b.precision and a.precision.name == "fp32"
    assert a.model.fill_hole_area == 0
    assert [r.getMessage() for r in caplog.records if r.name == "rtseg.engine.precision"] == [
        "precision fp32 (engine.precision: fp32 on the CPU)"]
    assert "mask hole filling off (engine.fill_holes: false)" in caplog.text


def test_hole_filling_is_on_by_default_on_the_cpu(caplog):
    with caplog.at_level(logging.INFO):
        preds, _ = build_predictors(config(), None)
    assert preds["a"].model.fill_hole_area == 8 and preds["a"].precision.name == "fp32"
    assert "mask hole filling: holes <= 8 low-res px, by torch" in caplog.text


def test_status_has_no_gpu_memory_for_an_engine_on_the_cpu():
    assert gpu_memory("cpu") is None


@pytest.mark.cuda(gpus=2)
def test_the_segmenter_selects_its_gpu_before_building_and_reports_that_gpus_memory():
    cfg = config().model_copy(update={"model": config().model.model_copy(update={"device": "cuda:1"})})
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated(0)
    try:
        preds, device = build_predictors(cfg, None)
        assert device == "cuda:1" and torch.cuda.current_device() == 1
        assert next(preds["a"].model.parameters()).device == torch.device("cuda", 1)
        mem = gpu_memory(device)
        assert mem["allocated_bytes"] == torch.cuda.memory_allocated(1) > 0
        assert torch.cuda.memory_allocated(0) == before
    finally:
        torch.cuda.set_device(0)

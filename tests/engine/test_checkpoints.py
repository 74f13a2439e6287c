"""Checkpoint loading: official-format files load the exact weights; truncated files,
non-checkpoints, other model sizes and missing files fail with errors a user can act on."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from rtseg.engine import CheckpointError, StreamingPredictor
from rtseg.engine.build import build_sam2_video_model
from rtseg.engine.checkpoints import describe_checkpoint, read_state_dict
from rtseg.engine.models import model_spec
from tests.helpers.engine import MODEL, make_clip

IMAGE_SIZE = 128
CPU = torch.device("cpu")


def _random_model(name: str, seed: int, image_size: int = IMAGE_SIZE):
    torch.manual_seed(seed)
    model = build_sam2_video_model(model_spec(name), None, CPU, image_size)
    with torch.no_grad():  # object head says "present": real logits instead of -1024 everywhere
        model.sam_mask_decoder.pred_obj_score_head.layers[-1].bias.fill_(20.0)
    return model


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """(model held in memory, the same weights saved in the official format)."""
    model = _random_model(MODEL, seed=7)
    path = tmp_path_factory.mktemp("ckpt") / "sam2.1_hiera_tiny.pt"
    torch.save({"model": model.state_dict()}, path)
    return model, path


def _first_frame_result(pred: StreamingPredictor, frame: np.ndarray):
    pred.track(frame)
    return pred.add_prompt(1, points=[[60, 45], [20, 20]], labels=[1, 0], logits=True)


def test_official_format_file_loads_the_same_weights(reference):
    model, path = reference
    frame = make_clip(1, 90, 120)[0][0]
    expected = _first_frame_result(StreamingPredictor(model), frame)
    loaded = StreamingPredictor.build(MODEL, checkpoint=path, device="cpu", image_size=IMAGE_SIZE)
    got = _first_frame_result(loaded, frame)
    assert expected.masks.any(), "the forced-object checkpoint must give a non-empty mask"
    np.testing.assert_array_equal(got.logits, expected.logits)
    np.testing.assert_array_equal(got.object_scores, expected.object_scores)
    # ... and the weights matter: another random model answers differently
    other = _first_frame_result(StreamingPredictor(_random_model(MODEL, seed=8)), frame)
    assert np.abs(other.logits - expected.logits).max() > 1e-2
    assert describe_checkpoint(read_state_dict(path)) == "sam2.1 tiny"


def test_truncated_file_is_named_truncated(reference, tmp_path):
    _, path = reference
    data = path.read_bytes()
    half = tmp_path / "half.pt"
    half.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt") as err:
        StreamingPredictor.build(MODEL, checkpoint=half, device="cpu", image_size=IMAGE_SIZE)
    assert str(half) in str(err.value) and "rtseg download" in str(err.value)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("text", "is not a SAM 2 checkpoint"),
        ([1, 2, 3], "found a list"),
        ({"state_dict": {"w": torch.zeros(1)}}, "found a dict with keys 'state_dict'"),
        ({1: "x", "a": 2}, "found a dict with keys 'a', 1"),
        ({"model": {"w": [1, 2]}}, "'model' entry holds non-tensors"),
    ],
    ids=["text-file", "list", "dict-without-model", "mixed-keys", "model-of-non-tensors"],
)
def test_non_checkpoints_get_a_clear_error(tmp_path, content, expected):
    path = tmp_path / "not_a_checkpoint.pt"
    if content == "text":
        path.write_text("model: sam2.1_hiera_t\nthis is not a checkpoint\n")
    else:
        torch.save(content, path)
    with pytest.raises(CheckpointError, match=expected) as err:
        read_state_dict(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize(("other", "described"), [("sam2.1_hiera_s", "sam2.1 small"), ("sam2_hiera_t", "sam2 tiny")])
def test_checkpoint_of_another_model_names_both(tmp_path, other, described):
    path = tmp_path / "other.pt"
    model = build_sam2_video_model(model_spec(other), None, CPU, 256)
    torch.save({"model": model.state_dict()}, path)
    del model
    with pytest.raises(CheckpointError) as err:
        StreamingPredictor.build(MODEL, checkpoint=path, device="cpu", image_size=IMAGE_SIZE)
    message = str(err.value)
    assert f"looks like {described}" in message and "sam2.1_hiera_t" in message and str(path) in message


def test_missing_file_points_at_rtseg_download(tmp_path):
    missing = tmp_path / "sam2.1_hiera_tiny.pt"
    with pytest.raises(CheckpointError, match="rtseg download") as err:
        StreamingPredictor.build(MODEL, checkpoint=missing, device="cpu", image_size=IMAGE_SIZE)
    assert str(missing) in str(err.value)


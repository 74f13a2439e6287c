"""The streaming engine computes exactly what sam2's offline SAM2VideoPredictor computes.

CPU, float32, random weights with the object-score head forced to 'present' (see
tests/helpers/engine.py), tiny model at image_size 256. Three cameras go through
`track_cameras` together (one image-encoder batch), each with its own objects: camera a gets
six objects added at different frames by points, a box and masks, two corrections, and one
object removed and its id added again; camera b two objects; camera c none. Every object's
logits on every frame must equal those of `propagate_in_video` run from that object's own
prompt frame on the same preprocessed frames (corrections: propagation up to the corrected
frame, the correction added there, propagation on from it, with sam2's
`add_all_frames_to_correct_as_cond`, which is what rtseg does with a correction). Hole
filling is on on both sides (tests/helpers/exactness.py says how the official predictor is
made to fill on the CPU), and the test checks that it filled pixels.
"""
from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest
import torch

from rtseg.engine import StreamingPredictor, holes
from rtseg.engine.build import build_sam2_video_model
from rtseg.engine.cameras import track_cameras
from rtseg.engine.models import model_spec
from rtseg.engine.preprocess import Normalizer, as_rgb_tensor, resize_uint8
from rtseg.engine.step import make_frame_step
from tests.helpers.engine import MODEL, make_clip, write_test_checkpoint
from tests.helpers.exactness import compare

N_FRAMES = 26
IMAGE_SIZE = 256
TOL = 1e-4  # CPU float32 noise is ~5e-7 (1 vs 2 threads); a pointer window of 8 instead of 16 shows as ~9e-4
CAMERAS = {"a": 0, "b": 1, "c": 2}  # camera -> seed of its clip

# (frame, camera, obj_id, prompt); prompt None: remove the object after that frame's masks.
# ("mask", k): the true mask of the clip's shape k on that frame.
SCRIPT = [
    (0, "a", 1, dict(points=[[40, 50], [150, 150]], labels=[1, 0])),
    (2, "b", 1, dict(box=[146, 100, 202, 140])),
    (3, "a", 2, dict(box=[146, 100, 202, 140])),
    (5, "b", 7, dict(points=[[40, 50]], labels=[1])),
    (6, "a", 3, ("mask", 3)),
    (8, "a", 4, dict(points=[[120, 60]], labels=[1])),
    (9, "a", 1, dict(points=[[60, 60]], labels=[1])),  # correction
    (11, "a", 5, dict(box=[20, 100, 90, 170])),
    (13, "a", 6, ("mask", 1)),
    (16, "a", 5, None),  # removed ...
    (18, "a", 2, dict(points=[[170, 120], [100, 40]], labels=[1, 0])),  # correction
    (20, "a", 5, dict(points=[[200, 40]], labels=[1])),  # ... and its id added again
]


def _kwargs(prompt, gt, frame: int) -> dict:
    return {"mask": gt[frame][prompt[1]]} if isinstance(prompt, tuple) else prompt


def lives(script=SCRIPT) -> dict[tuple[str, int, int], list[tuple[int, object]]]:
    """(camera, obj_id, life) -> its prompts [(frame, prompt)], and the frame after its last ("end")."""
    out, current = {}, {}
    for frame, cam, obj, prompt in script:
        if prompt is None:
            key = current.pop((cam, obj))
            out[key].append((frame + 1, "end"))
            continue
        if (cam, obj) not in current:
            current[(cam, obj)] = (cam, obj, sum(k[:2] == (cam, obj) for k in out))
            out[current[(cam, obj)]] = []
        out[current[(cam, obj)]].append((frame, prompt))
    for key in current.values():
        out[key].append((N_FRAMES, "end"))
    return out


def run_streaming(checkpoint, clips, *, compile: str = "off", ptr_window: int | None = None) -> dict:
    """Logits per (camera, object, life) per frame from three predictors sharing a model."""
    model = build_sam2_video_model(model_spec(MODEL), checkpoint, torch.device("cpu"), IMAGE_SIZE)
    preds = {cam: StreamingPredictor(model, compile=compile, objects=4, prompts=2) for cam in CAMERAS}
    if ptr_window is not None:  # deliberately wrong memory, to prove the comparison can fail
        for pred in preds.values():
            consts = dataclasses.replace(pred.consts, ptr_frames=ptr_window - 1)
            pred._frame_step = make_frame_step(model, consts, "off", pred.device)
    logits, life = {}, {}
    for i in range(N_FRAMES):
        results = dict(zip(CAMERAS, track_cameras([(preds[c], clips[c][0][i]) for c in CAMERAS],
                                                    logits=True, encoder_batch=len(CAMERAS))))
        removed = []
        for frame, cam, obj, prompt in SCRIPT:
            if frame != i:
                continue
            if prompt is None:
                removed.append((cam, obj))
                continue
            if obj not in preds[cam].obj_ids:
                life[(cam, obj)] = life.get((cam, obj), -1) + 1
            results[cam] = preds[cam].add_prompt(obj, logits=True, **_kwargs(prompt, clips[cam][1], i))
        for cam, result in results.items():
            for k, obj in enumerate(result.obj_ids):
                logits.setdefault((cam, obj, life[(cam, obj)]), {})[i] = result.logits[k]
        for cam, obj in removed:
            preds[cam].remove_object(obj)
    return logits


def official_predictor(checkpoint):
    from sam2.build_sam import build_sam2_video_predictor

    official = build_sam2_video_predictor(
        "configs/sam2.1/sam2.1_hiera_t.yaml", ckpt_path=str(checkpoint), device="cpu",
        hydra_overrides_extra=[f"++model.image_size={IMAGE_SIZE}"],
    )
    assert official.fill_hole_area == 8  # sam2's default post-processing, filled on the CPU too (fixture below)
    official.add_all_frames_to_correct_as_cond = True  # a correction is kept as a prompted frame, as rtseg does
    return official


def run_official(official, frames, gt, prompts, obj_id: int, folder) -> dict[int, np.ndarray]:
    """One object's life in its own inference state: propagate from each prompt to the next."""
    norm = Normalizer(torch.device("cpu"))
    state = official.init_state(str(folder))
    state["images"] = torch.cat([norm(resize_uint8(as_rgb_tensor(f, torch.device("cpu")), IMAGE_SIZE))
                                 for f in frames])  # the same preprocessed frames the streaming engine saw
    state["cached_features"] = {}
    out = {}
    for (frame, prompt), (stop, _) in zip(prompts, prompts[1:]):
        kwargs = _kwargs(prompt, gt, frame)
        if "mask" in kwargs:
            official.add_new_mask(state, frame_idx=frame, obj_id=obj_id, mask=kwargs["mask"])
        else:
            official.add_new_points_or_box(state, frame_idx=frame, obj_id=obj_id, **kwargs)
        last = stop - 1 if stop == prompts[-1][0] else stop  # up to the next prompt's frame (its click reads it)
        for f, _, masks in official.propagate_in_video(state, start_frame_idx=frame, max_frame_num_to_track=last - frame):
            out[f] = masks[0, 0].numpy()
    return out


@pytest.fixture(scope="module")
def clips():
    return {cam: make_clip(N_FRAMES, seed=seed) for cam, seed in CAMERAS.items()}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_test_checkpoint(tmp_path_factory.mktemp("ckpt") / "test.pt", IMAGE_SIZE)


@pytest.fixture(scope="module")
def official_logits(checkpoint, clips, tmp_path_factory):
    official = official_predictor(checkpoint)
    folders = {}
    for cam, (frames, _) in clips.items():
        folders[cam] = tmp_path_factory.mktemp(f"jpg-{cam}")
        for i, f in enumerate(frames):
            cv2.imwrite(str(folders[cam] / f"{i}.jpg"), f[:, :, ::-1])
    with holes.official_predictor_fills_everywhere():
        return {key: run_official(official, *clips[key[0]], prompts, key[1], folders[key[0]])
                for key, prompts in lives().items()}


def test_script_covers_what_it_claims():
    keys = lives()
    assert sum(k[0] == "a" for k in keys) == 7 and sum(k[0] == "b" for k in keys) == 2  # 6 objects + a re-add
    assert sum(len(p) > 2 for p in keys.values()) == 2  # two corrections
    kinds = {("mask" if isinstance(p, tuple) else next(iter(p))) for ps in keys.values() for _, p in ps[:-1]}
    assert kinds == {"points", "box", "mask"}


@pytest.mark.timeout(3000)  # a few minutes on two idle cores; 20-40 min on a loaded shared machine
def test_batched_cameras_and_objects_equal_official_propagation(checkpoint, clips, official_logits, monkeypatch):
    filled = []  # pixels each call of the hole filling changed: the comparison covers filling only if > 0
    fill = holes.fill_holes_in_mask_scores
    monkeypatch.setattr(holes, "fill_holes_in_mask_scores",
                        lambda m, area: filled.append(int((out := fill(m, area)).ne(m).sum())) or out)
    ours = run_streaming(checkpoint, clips)
    assert sum(filled) > 100, f"hole filling changed only {sum(filled)} pixels: the test does not cover it"
    assert sorted(ours) == sorted(official_logits)
    assert not any(k[0] == "c" for k in ours), "camera c has no objects"
    worst = 0.0
    for key, ref in official_logits.items():
        prompts = lives()[key]
        assert sorted(ours[key]) == sorted(ref) == list(range(prompts[0][0], prompts[-1][0])), key
        for f in ref:
            assert (ref[f] > 0).any(), f"reference mask of {key} empty at frame {f}: test is vacuous"
            assert ref[f].min() > -1000, "no-object logits (-1024): test checkpoint not applied"
            diff, flips = compare(ours[key][f], ref[f], TOL)
            worst = max(worst, diff)
            assert diff <= TOL, f"{key} frame {f}: max |Δlogit| {diff:.2e} > {TOL}"
            assert flips == 0, f"{key} frame {f}: {flips} mask pixels differ"
    print(f"max |Δlogit| over every object and frame: {worst:.2e}")


@pytest.mark.timeout(3000)
def test_comparison_detects_a_short_pointer_window(checkpoint, clips, official_logits):
    """The forks' 8-frame pointer window is measurably not SAM 2: this suite would catch it."""
    ours = run_streaming(checkpoint, clips, ptr_window=8)
    key = ("a", 1, 0)
    worst = max(compare(ours[key][f], official_logits[key][f], TOL)[0] for f in official_logits[key])
    assert worst > TOL, f"a wrong memory window went unnoticed (max |Δlogit| {worst:.2e})"

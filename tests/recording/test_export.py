"""`rtseg export`: COCO (pycocotools), DAVIS palette PNGs, MP4 with masks drawn; closed
segments and a crash-left `.part` alike."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from rtseg.cli import main as cli
from rtseg.recording.draw import davis_palette
from rtseg.view.overlay import object_color
from rtseg.recording import SegmentWriter
from rtseg.recording.store import new_segment_path
from tests.helpers.recording import H, W, frame_message, masks_for, masks_message, write_recording


def _recording(tmp_path, **kwargs):
    rec = tmp_path / "rec"
    write_recording(rec, 6, segments=2, **kwargs)  # frames 0-2 closed, 3-5 ...
    return rec


# pycocotools' own decode trips numpy 2's copy-keyword deprecation (not ours to fix)
@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
def test_coco_loads_with_pycocotools_and_every_mask_is_the_recorded_one(tmp_path, capsys):
    rec = _recording(tmp_path, leave_part=True, with_frames=True)  # ... left as .part by a "crash"
    out = tmp_path / "out" / "coco.json"
    assert cli(["export", str(rec), "--to", "coco", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "100%" in captured.err  # the progress bar ran to the end
    assert "6 images, 12 annotations, 6 JPEG frames" in captured.out

    coco = COCO(str(out))
    assert len(coco.getImgIds()) == 6 and coco.loadCats([1])[0]["name"] == "object"
    for image in coco.loadImgs(coco.getImgIds()):
        assert (image["width"], image["height"]) == (W, H)
        expected = masks_for(image["frame_index"])
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[image["id"]]))
        assert sorted(a["track_id"] for a in anns) == [1, 7]
        for ann in anns:
            got = coco.annToMask(ann).astype(bool)
            want = expected[0 if ann["track_id"] == 1 else 1]
            assert np.array_equal(got, want)
            ys, xs = np.nonzero(want)
            assert ann["bbox"] == [xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()]
            assert ann["area"] == want.sum()
        jpeg = out.parent / "coco_images" / image["file_name"]
        assert cv2.imread(str(jpeg)).shape == (H, W, 3)


def test_coco_names_only_image_files_that_exist_and_says_where_frames_were_not_recorded(tmp_path, capsys):
    rec = tmp_path / "rec"
    rec.mkdir()
    writer = SegmentWriter(new_segment_path(rec), fsync_interval_s=3600)
    for i in range(4):
        writer.write_message(masks_message(i))
        if i % 2 == 1:  # frames at half the masks' rate, as a frame topic at a lower fps records them
            writer.write_message(frame_message(i))
    writer.close()
    out = tmp_path / "coco.json"
    assert cli(["export", str(rec), "--to", "coco", "--out", str(out), "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "4 images, 8 annotations, 2 JPEG frames" in captured.out
    assert "note: 2 of 4 images have no file_name: their frames were not recorded" in captured.err
    doc = json.loads(out.read_text())
    named = {image["frame_index"]: image.get("file_name") for image in doc["images"]}
    assert named == {0: None, 1: "cam/00000001.jpg", 2: None, 3: "cam/00000003.jpg"}
    for name in filter(None, named.values()):
        assert (tmp_path / doc["info"]["image_root"] / name).is_file()
    assert doc["info"]["images_without_frame"] == 2

    no_frames = tmp_path / "masks-only"
    write_recording(no_frames, 3)
    assert cli(["export", str(no_frames), "--to", "coco", "--out", str(out), "--no-progress"]) == 0
    assert "3 of 3 images have no file_name" in capsys.readouterr().err
    doc = json.loads(out.read_text())
    assert all("file_name" not in image for image in doc["images"]) and doc["info"]["image_root"] is None


def test_davis_pngs_hold_object_ids_as_palette_indices(tmp_path):
    rec = _recording(tmp_path, with_frames=True)
    out = tmp_path / "davis"
    assert cli(["export", str(rec), "--to", "davis", "--out", str(out), "--no-progress"]) == 0
    pngs = sorted((out / "Annotations" / "cam").glob("*.png"))
    assert [p.name for p in pngs] == [f"{i:08d}.png" for i in range(6)]
    for i, path in enumerate(pngs):
        image = Image.open(path)
        assert image.mode == "P"
        assert np.array_equal(np.asarray(image.getpalette(), np.uint8).reshape(-1, 3)[:8], davis_palette()[:8])
        label = np.asarray(image)
        masks = masks_for(i)
        want = np.zeros((H, W), np.uint8)
        want[masks[0]] = 1
        want[masks[1]] = 7
        assert np.array_equal(label, want)
    assert len(list((out / "JPEGImages" / "cam").glob("*.jpg"))) == 6
    assert json.loads((out / "objects.json").read_text()) == {"1": 1, "7": 7}


def test_mp4_draws_the_masks_over_the_recorded_frames(tmp_path, capsys):
    rec = _recording(tmp_path, with_frames=True, cameras=("a", "b"))
    out = tmp_path / "video.mp4"
    assert cli(["export", str(rec), "--to", "mp4", "--out", str(out), "--camera", "b"]) == 0
    assert "masks on black" not in capsys.readouterr().out
    rgb = _frames(out)
    assert len(rgb) == 6
    frame = rgb[0].astype(int)  # recorded frame 0: (40, 40, 0) everywhere
    color = np.array(object_color(7))
    assert np.abs(frame[32, 40] - (np.array([40, 40, 0]) * 0.5 + color * 0.5)).max() < 30  # object 7
    assert np.abs(frame[45, 5] - [40, 40, 0]).max() < 30  # background is the frame


def test_mp4_without_recorded_frames_draws_on_black_and_says_so(tmp_path, capsys):
    rec = _recording(tmp_path)
    out = tmp_path / "video.mp4"
    assert cli(["export", str(rec), "--to", "mp4", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "no frames were recorded" in captured.err and "masks on black" in captured.out
    rgb = _frames(out)
    assert len(rgb) == 6
    assert rgb[0][45, 5].max() < 20 and np.abs(rgb[0][32, 40].astype(int) - np.array(object_color(7)) * 0.5).max() < 30


def test_export_of_nothing_is_a_clear_error(tmp_path, capsys):
    assert cli(["export", str(tmp_path / "missing"), "--to", "coco"]) == 1
    assert "does not exist: give a recording folder" in capsys.readouterr().err
    rec = _recording(tmp_path)
    assert cli(["export", str(rec), "--to", "coco", "--camera", "nope", "--no-progress"]) == 1
    assert "holds no masks of camera(s) ['nope']" in capsys.readouterr().err


def _frames(path):
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(bgr[..., ::-1])
    cap.release()
    return frames

"""Sources: synthetic, video file, image folder, webcam errors; the factory and its errors."""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from rtseg.sources import (
    Frame,
    ImageFolderSource,
    SourceError,
    SyntheticScene,
    SyntheticSource,
    VideoFileSource,
    open_source,
    source_kind,
)


def _write_video(path: Path, frames: int = 20, size: tuple[int, int] = (64, 48), fps: float = 25.0) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    assert writer.isOpened(), "OpenCV cannot write MJPG avi here"
    for i in range(frames):
        bgr = np.zeros((size[1], size[0], 3), np.uint8)
        bgr[..., 2] = 255  # pure red in BGR
        bgr[: size[1] // 2, :, 1] = i * 10
        writer.write(bgr)
    writer.release()


# -- Frame --------------------------------------------------------------------------------

def test_frame_is_frozen_and_checks_its_image() -> None:
    frame = Frame.now(np.zeros((4, 6, 3), np.uint8), "cam", 7)
    assert (frame.width, frame.height, frame.index, frame.source_id) == (6, 4, 7, "cam")
    assert abs(frame.t_wall_ns - time.time_ns()) < 1e9 and frame.t_mono_ns <= time.monotonic_ns()
    with pytest.raises(dataclasses.FrozenInstanceError):
        frame.index = 8  # type: ignore[misc]
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        Frame.now(np.zeros((4, 6), np.uint8), "cam", 0)
    with pytest.raises(ValueError, match="do not match"):
        Frame(np.zeros((4, 6, 3), np.uint8), "cam", 0, 0, 0, width=4, height=6)


# -- synthetic -----------------------------------------------------------------------------

def test_synthetic_is_deterministic_per_seed() -> None:
    url = "synthetic://96x64@30?objects=3&seed=5&realtime=false"
    a, b = open_source(url), open_source(url)
    other = open_source("synthetic://96x64@30?objects=3&seed=6&realtime=false")
    for _ in range(5):
        fa, fb, fo = a.read(), b.read(), other.read()
        assert np.array_equal(fa.image, fb.image)
        assert fa.gt_masks.keys() == fb.gt_masks.keys() == {1, 2, 3}
        assert all(np.array_equal(fa.gt_masks[k], fb.gt_masks[k]) for k in fa.gt_masks)
        assert not np.array_equal(fa.image, fo.image)
    assert fa.index == 4 and fa.image.shape == (64, 96, 3) and fa.image.dtype == np.uint8


def test_synthetic_masks_are_the_visible_pixels_and_objects_occlude() -> None:
    scene = SyntheticScene(160, 120, objects=4, seed=1)
    occluded_frames = 0
    for index in range(0, 400, 4):
        image, masks = scene.render(index)
        union = np.zeros((120, 160), bool)
        for obj_id, mask in masks.items():
            assert not (union & mask).any(), "visible masks must not overlap"
            union |= mask
            color = scene.objects[obj_id - 1].color
            assert (image[mask] == color).all(), f"object {obj_id} mask covers pixels of another colour"
            whole = scene.silhouette(obj_id, index)
            assert not (mask & ~whole).any()
            occluded_frames += int((whole & ~mask).sum() > 20)
        assert np.array_equal(scene.masks(index)[1], masks[1])
    assert occluded_frames > 0, "in 100 frames some object should pass behind another"
    first, later = scene.masks(0), scene.masks(30)
    assert any(not np.array_equal(first[k], later[k]) for k in first), "objects must move"


def test_synthetic_paces_like_a_camera_unless_realtime_false() -> None:
    paced = open_source("synthetic://64x48@50?frames=11")
    t0 = time.monotonic()
    frames = [paced.read() for _ in range(11)]
    assert time.monotonic() - t0 >= 0.19  # 10 periods of 20 ms
    gaps = np.diff([f.t_mono_ns for f in frames]) / 1e6
    assert np.median(gaps) == pytest.approx(20, abs=5)
    assert paced.read() is None, "frames=11 ends the stream"
    fast = SyntheticSource("synthetic://64x48@5?realtime=false")
    t0 = time.monotonic()
    for _ in range(20):
        fast.read()
    assert time.monotonic() - t0 < 0.5


def test_synthetic_explicit_size_wins_and_bad_urls_are_explained() -> None:
    src = open_source("synthetic://640x480@30", width=80, height=60)
    assert (src.width, src.height, src.read().image.shape) == (80, 60, (60, 80, 3))
    with pytest.raises(SourceError, match=r"expected synthetic://WIDTHxHEIGHT@FPS"):
        open_source("synthetic://big")
    with pytest.raises(SourceError, match=r"unknown option\(s\) \['colour'\]"):
        open_source("synthetic://64x48@30?colour=red")
    with pytest.raises(SourceError, match="objects='x' is not an integer"):
        open_source("synthetic://64x48@30?objects=x")


# -- video files and folders ---------------------------------------------------------------

def test_video_file_delivers_every_frame_in_rgb_then_ends(tmp_path: Path) -> None:
    path = tmp_path / "clip.avi"
    _write_video(path, frames=20)
    with open_source(f"{path}?realtime=false", source_id="clip") as src:
        assert isinstance(src, VideoFileSource) and (src.width, src.height) == (64, 48)
        assert src.fps == pytest.approx(25)
        frames = []
        while (frame := src.read()) is not None:
            frames.append(frame)
    assert [f.index for f in frames] == list(range(20))
    assert frames[0].source_id == "clip"
    red = frames[3].image[-1, 0].astype(int)  # bottom half is pure red
    assert red[0] > 200 and red[1] < 50 and red[2] < 50, f"expected RGB red, got {red}"


def test_video_file_is_paced_to_its_fps_and_resized_on_request(tmp_path: Path) -> None:
    path = tmp_path / "clip.avi"
    _write_video(path, frames=8, fps=25)
    src = open_source(str(path), width=32)
    t0 = time.monotonic()
    frames = [src.read() for _ in range(8)]
    assert time.monotonic() - t0 >= 0.26  # 7 periods of 40 ms
    assert frames[0].image.shape == (24, 32, 3)
    src.close()


def test_image_folder_plays_in_natural_order(tmp_path: Path) -> None:
    for i in (10, 2, 1):
        cv2.imwrite(str(tmp_path / f"img{i}.png"), np.full((12, 16, 3), i, np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    src = open_source(f"{tmp_path}?realtime=false")
    assert isinstance(src, ImageFolderSource)
    values = [int(f.image[0, 0, 0]) for f in iter(src.read, None)]
    assert values == [1, 2, 10]


def test_corrupt_and_missing_files_give_clear_errors(tmp_path: Path) -> None:
    corrupt = tmp_path / "broken.mp4"
    corrupt.write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    with pytest.raises(SourceError, match=r"cannot decode video file .*broken\.mp4.*corrupt.*ffprobe") as err:
        open_source(str(corrupt))
    assert err.value.live is False
    empty = tmp_path / "empty.mkv"
    empty.write_bytes(b"")
    with pytest.raises(SourceError, match="cannot decode video file"):
        open_source(str(empty))
    with pytest.raises(SourceError, match=r"no such file or folder: '.*missing\.mp4'"):
        open_source(str(tmp_path / "missing.mp4"))
    (tmp_path / "frames").mkdir()
    cv2.imwrite(str(tmp_path / "frames" / "a.png"), np.zeros((4, 4, 3), np.uint8))
    (tmp_path / "frames" / "b.png").write_bytes(b"garbage")
    src = open_source(str(tmp_path / "frames"))
    src.read()
    with pytest.raises(SourceError, match=r"cannot decode image .*b\.png"):
        src.read()
    (tmp_path / "no_frames").mkdir()
    with pytest.raises(SourceError, match=r"image folder .*no_frames' has no images"):
        open_source(str(tmp_path / "no_frames"))


def test_source_kinds_and_unknown_schemes() -> None:
    assert [source_kind(u) for u in ("0", "/dev/video2", "rtsp://h/s", "https://h/v", "synthetic://", "a.mp4")] == [
        "webcam", "webcam", "network", "network", "synthetic", "file"]
    with pytest.raises(SourceError, match=r"unknown source scheme 'ftp' in 'ftp://\*\*\*@host/x'"):
        open_source("ftp://bob:pw@host/x")
    with pytest.raises(SourceError, match=r"unknown option\(s\) \['speed'\]"):
        open_source("clip.mp4?speed=2")

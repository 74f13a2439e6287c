"""The whole pipeline with real processes and sockets: `rtseg run` (supervisor, capture,
segmenter), a synthetic camera, a subscriber and a controller. CPU, image_size 128."""
from __future__ import annotations

import math
import os
import signal
import time

import msgpack
import numpy as np
import psutil
import pytest
import torch
import zmq

from rtseg.client import ControlError, Controller, Subscriber
from rtseg.protocol import PROTOCOL_VERSION
from tests.helpers.engine import write_test_checkpoint
from tests.helpers.pipeline import Pipeline, write_config
from tests.helpers.net import free_port


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_test_checkpoint(tmp_path_factory.mktemp("ckpt") / "test128.pt", 128)


def next_masks(sub: Subscriber, timeout_s: float = 30.0, want=lambda m: True):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        m = sub.recv(timeout=max(0.1, deadline - time.monotonic()))
        if m is not None and hasattr(m, "obj_ids") and want(m):
            return m
    raise AssertionError(f"no matching masks message within {timeout_s} s")


def shm_segments(run_id: str) -> list[str]:
    return [n for n in os.listdir("/dev/shm") if run_id in n]


def raw_request(endpoint: str, payload: bytes, timeout_ms: int = 10000) -> dict:
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.REQ)
    sock.linger = 0
    sock.connect(endpoint)
    try:
        sock.send(payload)
        assert sock.poll(timeout_ms), "the segmenter did not answer a malformed request"
        return msgpack.unpackb(sock.recv(), raw=False)
    finally:
        sock.close()


def test_prompted_object_streams_on_rising_frames(tmp_path, checkpoint):
    with Pipeline(write_config(tmp_path, checkpoint, policy="latest")) as pipe, Subscriber(pipe.pub, topics=("masks", "status")) as sub:
        pipe.wait_ready()
        with Controller(pipe.control, timeout=20) as ctl:
            reply = ctl.add_points("cam", 1, [[40, 40]], [1])
        assert reply["ok"] and reply["obj_ids"] == [1]
        first = next_masks(sub, want=lambda m: 1 in m.obj_ids)
        seen = [first]
        while len(seen) < 8:
            seen.append(next_masks(sub))
        indices = [m.frame_index for m in seen]
        assert indices == sorted(set(indices)), f"frame indices not rising: {indices}"
        for m in seen:
            assert m.obj_ids == [1] and m.masks.shape == (1, 120, 160)
            assert m.areas[0] > 0 and m.masks[0].sum() == m.areas[0]
            assert m.received_ns >= m.published_ns >= m.processed_ns >= m.capture_ns
        # a click names the frame it was made on: applied there while held, else to the latest
        clicked = seen[-1].frame_index
        with Controller(pipe.control, timeout=20) as ctl:
            late = ctl.add_points("cam", 2, [[100, 60]], [1], frame_index=clicked)
            stale = ctl.add_box("cam", 3, [5, 5, 50, 50], frame_index=0)
            with pytest.raises(ControlError, match=r"frame_index 99999 is newer than the latest tracked frame \d+ "
                                                   r"of camera 'cam'"):
                ctl.add_box("cam", 4, [5, 5, 50, 50], frame_index=99_999)
        assert (late["applied_to"], late["frame_index"]) == ("requested", clicked)
        assert stale["applied_to"] == "latest" and stale["frame_index"] >= clicked
        assert stale["obj_ids"] == [1, 2, 3]
        status = None
        while status is None:
            msg = sub.recv(timeout=5)
            status = msg if msg is not None and hasattr(msg, "cameras") else None
        cam = status.cameras["cam"]
        assert cam.source_state == "connected" and cam.frames_processed > 0


def test_malformed_requests_are_answered_and_change_nothing(tmp_path, checkpoint):
    with Pipeline(write_config(tmp_path, checkpoint, policy="latest")) as pipe:
        pipe.wait_ready()
        v = PROTOCOL_VERSION
        bad = [
            b"\xff\x00 not msgpack",
            msgpack.packb([1, 2, 3]),
            msgpack.packb({"v": v + 1, "type": "add_points", "camera": "cam", "obj_id": 1, "points": [[1, 1]], "labels": [1]}),
            msgpack.packb({"v": v, "type": "add_points", "camera": "cam", "obj_id": 1, "points": [[math.nan, 1]], "labels": [1]}),
            msgpack.packb({"v": v, "type": "add_points", "camera": "cam", "obj_id": 1, "points": [[999, 1]], "labels": [1]}),
            msgpack.packb({"v": v, "type": "add_box", "camera": "cam", "obj_id": 1, "box": [50, 50, 10, 10]}),
            msgpack.packb({"v": v, "type": "remove", "camera": "cam", "obj_id": 42}),
            msgpack.packb({"v": v, "type": "add_points", "camera": "nope", "obj_id": 1, "points": [[1, 1]], "labels": [1]}),
            msgpack.packb({"v": v, "type": "explode", "camera": "cam"}),
        ]
        for payload in bad:
            reply = raw_request(pipe.control, payload)
            assert reply["ok"] is False and reply["error"]["message"], reply
        with Controller(pipe.control, timeout=20) as ctl:
            assert ctl.list()["cameras"]["cam"]["obj_ids"] == []  # nothing was applied
            with pytest.raises(ControlError, match="outside"):
                ctl.add_points("cam", 3, [[-5, 10]], [1])
            assert ctl.add_box("cam", 2, [10, 10, 60, 60])["obj_ids"] == [2]
        assert pipe.proc.poll() is None


def test_killed_segmenter_is_restarted_with_its_objects_and_shutdown_is_clean(tmp_path, checkpoint):
    with Pipeline(write_config(tmp_path, checkpoint, policy="latest")) as pipe, Subscriber(pipe.pub) as sub:
        pipe.wait_ready()
        with Controller(pipe.control, timeout=20) as ctl:
            ctl.add_points("cam", 1, [[40, 40]], [1])
            ctl.add_box("cam", 2, [80, 50, 150, 110])
        next_masks(sub, want=lambda m: m.obj_ids == [1, 2])
        old = pipe.pids()
        os.kill(old["segmenter"], signal.SIGKILL)
        deadline = time.monotonic() + 60
        while pipe.pids().get("segmenter") in (None, old["segmenter"]):
            assert time.monotonic() < deadline, f"segmenter not restarted:\n{pipe.output()}"
            time.sleep(0.2)
        restored = next_masks(sub, timeout_s=90, want=lambda m: m.obj_ids == [1, 2])
        assert (restored.areas > 0).all()
        deadline = time.monotonic() + 10  # the log line travels through the supervisor's LogListener
        while not ("restored object 1" in pipe.output() and "restored object 2" in pipe.output()):
            assert time.monotonic() < deadline, f"restore not logged:\n{pipe.output()}"
            time.sleep(0.2)

        pids = pipe.pids()
        run_id = pids["run_id"]
        assert shm_segments(run_id), "the capture ring should exist while running"
        titles = {name: " ".join(psutil.Process(pid).cmdline()).strip() for name, pid in pids.items()
                  if isinstance(pid, int) and name != "supervisor"}
        assert titles == {"capture-cam": "rtseg: capture-cam", "segmenter": "rtseg: segmenter"}, titles  # ps, htop
        took = pipe.stop()
        assert pipe.proc.returncode == 0, pipe.output()
        assert took < 5.0, f"shutdown took {took:.1f} s"
        alive = [name for name, pid in pids.items() if isinstance(pid, int) and name != "supervisor"
                 and psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
        assert alive == [], f"orphans after shutdown: {alive}"
        assert shm_segments(run_id) == [], "shared memory leaked"


def test_hung_segmenter_is_killed_and_restarted(tmp_path, checkpoint):
    cfg = write_config(tmp_path, checkpoint, policy="latest", extra={"supervisor": {"heartbeat_timeout_s": 3}})
    with Pipeline(cfg) as pipe:
        pipe.wait_ready()
        old = pipe.pids()["segmenter"]
        os.kill(old, signal.SIGSTOP)  # alive but silent: only the heartbeat can tell
        deadline = time.monotonic() + 60
        while pipe.pids().get("segmenter") == old:
            assert time.monotonic() < deadline, f"hung segmenter not replaced:\n{pipe.output()}"
            time.sleep(0.2)
        assert "segmenter stopped beating" in pipe.output()
        assert not psutil.pid_exists(old) or psutil.Process(old).status() == psutil.STATUS_ZOMBIE
        pipe.wait_ready()


def test_missing_checkpoint_is_a_clear_error(tmp_path, monkeypatch):
    cfg = write_config(tmp_path, tmp_path / "nowhere" / "sam2.1_hiera_tiny.pt")
    port = free_port()  # nothing listens there: the download fails at once
    monkeypatch.setenv("RTSEG_CHECKPOINT_BASE_URL", f"http://127.0.0.1:{port}/")
    with Pipeline(cfg) as pipe:
        assert pipe.proc.wait(60) != 0
        out = pipe.output()
    assert "nowhere/sam2.1_hiera_tiny.pt is missing" in out
    assert "rtseg download sam2.1_hiera_t" in out and "--weights random" in out


def test_two_cameras_share_one_segmenter(tmp_path, checkpoint):
    cams = [{"id": "left", "source": "synthetic://160x120@6?objects=2&seed=1"},
            {"id": "right", "source": "synthetic://128x96@6?objects=1&seed=2"}]
    with Pipeline(write_config(tmp_path, checkpoint, policy="latest", cameras=cams)) as pipe, \
            Subscriber(pipe.pub) as sub:
        pipe.wait_ready()
        with Controller(pipe.control, timeout=20) as ctl:
            ctl.add_points("left", 1, [[40, 40]], [1])
            ctl.add_box("right", 7, [10, 10, 60, 60])
            listed = ctl.list()["cameras"]
        assert listed == {"left": {"obj_ids": [1], "frame_size": [120, 160], "zones": []},
                          "right": {"obj_ids": [7], "frame_size": [96, 128], "zones": []}}
        left = next_masks(sub, want=lambda m: m.camera == "left" and m.obj_ids == [1])
        right = next_masks(sub, want=lambda m: m.camera == "right" and m.obj_ids == [7])
        assert left.masks.shape == (1, 120, 160) and right.masks.shape == (1, 96, 128)


def test_a_recorder_that_cannot_write_never_stops_the_segmenter(tmp_path, checkpoint):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the recording folder should be")
    cfg = write_config(tmp_path, checkpoint, policy="latest",
                       extra={"recorder": {"enabled": True, "directory": str(blocker / "rec")}})
    with Pipeline(cfg) as pipe, Subscriber(pipe.pub) as sub:
        pipe.wait_ready()
        deadline = time.monotonic() + 60
        while "recorder cannot run" not in pipe.output():
            assert time.monotonic() < deadline, f"recorder failure not reported:\n{pipe.output()}"
            time.sleep(0.3)
        assert "left off, the rest of the pipeline goes on" in pipe.output()
        with Controller(pipe.control, timeout=20) as ctl:
            ctl.add_points("cam", 1, [[40, 40]], [1])
        next_masks(sub, want=lambda m: m.obj_ids == [1])
        assert pipe.proc.poll() is None and "recorder" not in pipe.pids()


def test_every_policy_delivers_every_frame_of_a_file(tmp_path, checkpoint):
    import cv2

    from tests.helpers.engine import make_clip

    frames, _ = make_clip(30, 96, 128)
    clip = tmp_path / "clip.mp4"
    out = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 25, (128, 96))
    for f in frames:
        out.write(np.ascontiguousarray(f[:, :, ::-1]))
    out.release()
    cams = [{"id": "cam", "source": f"{clip}?realtime=false", "ring_slots": 3}]  # far fewer slots than frames
    with Pipeline(write_config(tmp_path, checkpoint, policy="every", cameras=cams)) as pipe, \
            Subscriber(pipe.pub) as sub:
        got = []
        while len(got) < 30:
            got.append(next_masks(sub, timeout_s=120))
        assert [m.frame_index for m in got] == list(range(30)), "a frame of the file was skipped"
        assert all(m.skipped_total == 0 for m in got)


def test_operator_flow_run_with_viewer_and_recorder_prompt_stop_export(tmp_path, checkpoint, monkeypatch):
    """What an operator does: run with viewer and recorder, prompt an object, close, export."""
    from pycocotools.coco import COCO

    from rtseg.cli import main as cli_main
    from rtseg.protocol import decode_rle

    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")  # the viewer window, with no screen here
    rec = tmp_path / "rec"
    cfg = write_config(tmp_path, checkpoint, policy="latest", extra={
        "recorder": {"enabled": True, "directory": str(rec), "segment_seconds": 2},
        "viewer": {"enabled": True}})
    with Pipeline(cfg) as pipe, Subscriber(pipe.pub) as sub:
        pipe.wait_ready()
        deadline = time.monotonic() + 60
        while not {"viewer", "recorder"} <= set(pipe.pids()):
            assert time.monotonic() < deadline, pipe.output()
            time.sleep(0.2)
        with Controller(pipe.control, timeout=20) as ctl:
            ctl.add_points("cam", 1, [[40, 40]], [1])  # what a left click in the viewer sends
        for _ in range(5):
            next_masks(sub, want=lambda m: m.obj_ids == [1])
        took = pipe.stop()
        assert pipe.proc.returncode == 0 and took < 5.0, pipe.output()
    out = tmp_path / "export.json"
    assert cli_main(["export", str(rec), "--to", "coco", "--out", str(out), "--no-progress"]) == 0
    coco = COCO(str(out))
    anns = [a for a in coco.dataset["annotations"] if a["category_id"] == 1 or a.get("track_id") == 1]
    assert len(anns) >= 5, "the prompted object's masks were not recorded"
    # (pycocotools' own decode warns under numpy 2; rtseg's decoder reads the same RLE)
    assert all(decode_rle(a["segmentation"]).sum() == a["area"] > 0 for a in anns)


def test_a_gpu_this_host_lacks_stops_at_once_with_the_reason(tmp_path, checkpoint):
    # cuda:N one past the GPUs torch sees: no GPU on a CPU-only host, one too many on a GPU host
    missing = f"cuda:{torch.cuda.device_count()}"
    cfg = write_config(tmp_path, checkpoint, extra={"model": {"device": missing}})
    with Pipeline(cfg) as pipe:
        assert pipe.proc.wait(90) != 0
        out = pipe.output()
    assert f"device '{missing}' requested but" in out
    assert ("no NVIDIA GPU" in out and "model.device: cpu" in out) or "usable GPU(s): cuda:0.." in out
    assert "restarting" not in out, "a missing GPU is not worth restarting for"

"""rtseg.client and `rtseg prompt` against a real Publisher and ControlServer on loopback."""
from __future__ import annotations

import json
import threading
import time
from typing import Iterator

import numpy as np
import pytest
import zmq

from rtseg.cli import main as rtseg_main
from rtseg.client import ControlError, Controller, ControlTimeout, FrameImage, Masks, Subscriber
from rtseg.pipeline.control import ControlServer, ErrorCode
from rtseg.protocol import FrameMessage, MasksMessage, PromptEvent, StatusMessage, encode_rle
from rtseg.pipeline.publisher import Publisher
from tests.helpers.control import H, LATEST, W, FakeHandler, serving
from tests.helpers.publishing import drain, masks_message, warm_up


@pytest.fixture
def pub(ctx) -> Iterator[Publisher]:
    publisher = Publisher("tcp://127.0.0.1:*", context=ctx)
    yield publisher
    publisher.close()


# ---------------------------------------------------------------- Subscriber
def test_subscriber_yields_decoded_masks(ctx, pub):
    sub = Subscriber(pub.endpoint, cameras=["warm", "cam"], context=ctx)
    warm_up(pub, [sub])
    drain(sub)
    masks = np.zeros((2, 30, 40), bool)
    masks[0, 2:9, 3:20] = True
    masks[1, 25:, :] = True
    msg = MasksMessage.from_arrays("cam", 812, obj_ids=[4, 2], masks=masks, scores=[3.5, 0.25],
                                   boxes=np.array([[3, 2, 19, 8], [0, 25, 39, 29]]), capture_ns=time.monotonic_ns(),
                                   capture_wall_ns=time.time_ns(), processed_ns=time.monotonic_ns(),
                                   latency_ms={"model": 9.5}, skipped_total=7, skipped_since_last=2)
    pub.publish(msg)
    result = next(iter(sub))
    assert isinstance(result, Masks)
    assert (result.camera, result.frame_index, result.obj_ids) == ("cam", 812, [4, 2])
    assert result.masks.dtype == bool and result.masks.shape == (2, 30, 40)
    np.testing.assert_array_equal(result.masks, masks)
    np.testing.assert_array_equal(result.mask_of(2), masks[1])
    np.testing.assert_array_equal(result.boxes, np.array([[3, 2, 19, 8], [0, 25, 39, 29]], np.float32))
    np.testing.assert_array_equal(result.scores, np.array([3.5, 0.25], np.float32))
    assert result.areas.tolist() == [7 * 17, 5 * 40]
    assert (result.width, result.height, result.skipped_total, result.skipped_since_last) == (40, 30, 7, 2)
    assert result.latency_ms == {"model": 9.5}
    assert msg.capture_ns <= msg.processed_ns <= result.published_ns <= result.received_ns
    with pytest.raises(KeyError, match="object 9 is not in frame 812"):
        result.mask_of(9)
    sub.close()


def test_subscriber_filters_cameras_exactly(ctx, pub):
    sub = Subscriber(pub.endpoint, cameras=["warm", "cam1"], context=ctx)
    warm_up(pub, [sub])
    drain(sub)
    pub.publish(masks_message("cam10"))  # matches the prefix "masks.cam1"
    pub.publish(masks_message("cam1"))
    pub.publish(StatusMessage())  # not subscribed
    got = sub.recv(timeout=5)
    assert isinstance(got, Masks) and got.camera == "cam1"
    assert sub.recv(timeout=0.2) is None
    sub.close()


def test_subscriber_topics_frames_status_prompts(ctx, pub):
    sub = Subscriber(pub.endpoint, topics=["frame", "status", "prompt"], context=ctx)
    deadline = time.monotonic() + 10
    while sub.recv(timeout=0.02) is None and time.monotonic() < deadline:
        pub.publish(StatusMessage(device="warm"))
    drain(sub)
    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[..., 0] = 200  # red
    pub.publish(FrameMessage.from_image("cam", 9, rgb, capture_ns=5, capture_wall_ns=6, quality=95))
    pub.publish(masks_message("cam"))  # not subscribed
    pub.publish(PromptEvent("cam", "remove", 3, None, None, {}, (1,), 77))
    pub.publish(StatusMessage(device="cpu", uptime_s=3.0))
    frame, event, status = (sub.recv(timeout=5) for _ in range(3))
    assert isinstance(frame, FrameImage) and frame.image.shape == (20, 30, 3) and frame.frame_index == 9
    assert abs(int(frame.image[..., 0].mean()) - 200) < 5 and frame.image[..., 2].mean() < 5  # RGB, not BGR
    assert isinstance(event, PromptEvent) and (event.op, event.obj_id, event.obj_ids) == ("remove", 3, (1,))
    assert isinstance(status, StatusMessage) and status.device == "cpu"
    sub.close()


def test_subscriber_survives_garbage(ctx):
    raw_pub = ctx.socket(zmq.PUB)
    raw_pub.linger = 0
    port = raw_pub.bind_to_random_port("tcp://127.0.0.1")
    sub = Subscriber(f"tcp://127.0.0.1:{port}", context=ctx)
    good = masks_message("cam")
    from rtseg.protocol import pack

    deadline = time.monotonic() + 10
    while sub.recv(timeout=0.02) is None and time.monotonic() < deadline:
        raw_pub.send_multipart(pack(good))
    drain(sub)
    raw_pub.send_multipart([b"masks.cam", b"\xc1 garbage"])
    raw_pub.send_multipart([b"masks.cam"])
    raw_pub.send_multipart(pack(good))
    assert isinstance(sub.recv(timeout=5), Masks)
    assert sub.stats()["decode_errors"] == 2
    sub.close()
    raw_pub.close()


def test_subscriber_timeout_and_bad_topics(ctx, pub):
    with Subscriber(pub.endpoint, context=ctx) as sub:
        started = time.monotonic()
        assert sub.recv(timeout=0.2) is None
        assert 0.15 < time.monotonic() - started < 2
    with pytest.raises(ValueError, match="unknown topic"):
        Subscriber(pub.endpoint, topics=["mask"], context=ctx)


# ---------------------------------------------------------------- Controller
def test_controller_every_request(ctx):
    handler = FakeHandler()
    with serving(handler, ctx) as server, Controller(server.endpoint, timeout=5, context=ctx) as ctl:
        reply = ctl.add_points("cam", 1, np.array([[10.5, 20]], np.float32))  # labels default to 1
        assert reply["ok"] and reply["frame_index"] == LATEST and reply["applied_to"] == "latest"
        assert handler.calls[-1].labels.tolist() == [1]
        reply = ctl.add_points("cam", 1, [[1, 2], [3, 4]], [1, 0], frame_index=np.int64(97))
        assert reply["applied_to"] == "requested" and reply["frame_index"] == 97
        assert ctl.add_box("cam", 2, np.array([1, 2, 30, 40]))["obj_ids"] == [1, 2]
        mask = np.zeros((H, W), bool)
        mask[5:10, 5:10] = True
        assert ctl.add_mask("cam", 3, mask)["obj_id"] == 3
        assert handler.calls[-1].mask.sum() == 25
        assert ctl.add_mask("cam", 4, encode_rle(mask))["ok"]
        assert ctl.list()["cameras"]["cam"]["obj_ids"] == [1, 2, 3, 4]
        assert ctl.list("cam2")["cameras"] == {"cam2": {"obj_ids": [], "frame_size": [20, 30]}}
        assert ctl.status()["cameras"]["cam"]["fps"] == 30.0
        assert ctl.remove("cam", 2)["obj_ids"] == [1, 3, 4]
        assert ctl.reset("cam")["removed"] == [1, 3, 4]


def test_controller_raises_control_error(ctx):
    handler = FakeHandler()
    with serving(handler, ctx) as server, Controller(server.endpoint, context=ctx) as ctl:
        with pytest.raises(ControlError, match=r"add_points refused \[invalid_value\]: points\[0\]") as err:
            ctl.add_points("cam", 1, [[W + 5, 1]])
        assert err.value.code == ErrorCode.INVALID_VALUE and err.value.field == "points[0]"
        with pytest.raises(ControlError) as err:
            ctl.remove("cam", 42)
        assert err.value.code == ErrorCode.UNKNOWN_OBJECT
        with pytest.raises(ControlError, match="unknown_camera"):
            ctl.reset("nope")
        assert ctl.list()["ok"]  # the same socket goes on after refusals
    assert handler.calls == []


def test_controller_times_out_then_recovers(ctx):
    handler = FakeHandler()
    server = ControlServer("tcp://127.0.0.1:*", handler, context=ctx)  # bound, but nobody polls yet
    ctl = Controller(server.endpoint, timeout=0.3, context=ctx)
    with pytest.raises(ControlTimeout, match="no reply to list .* within 0.3 s"):
        ctl.list()
    stop = threading.Event()
    thread = threading.Thread(target=server.serve, args=(stop, 10))
    thread.start()
    try:
        assert ctl.add_points("cam", 1, [[1, 1]])["ok"]  # a fresh REQ socket: no "operation cannot be accomplished"
    finally:
        stop.set()
        thread.join()
        server.close()
    ctl.close()


def test_prompt_events_are_published(ctx, pub):
    handler = FakeHandler()
    sub = Subscriber(pub.endpoint, cameras=["warm", "cam"], topics=["prompt", "masks"], context=ctx)
    warm_up(pub, [sub])
    drain(sub)
    server = ControlServer("tcp://127.0.0.1:*", handler, context=ctx, publisher=pub)
    with Controller(server.endpoint, context=ctx) as ctl:
        for action in (lambda: ctl.add_points("cam", 5, [[1, 2]], frame_index=96), lambda: ctl.remove("cam", 5),
                       lambda: ctl.list()):
            replier = threading.Thread(target=server.poll_once, args=(5000,))  # publisher and server: one thread
            replier.start()
            action()
            replier.join()
    server.close()
    added, removed = sub.recv(timeout=5), sub.recv(timeout=5)
    assert isinstance(added, PromptEvent) and added.op == "add_points" and added.obj_id == 5
    assert (added.frame_index, added.requested_frame_index, added.obj_ids) == (96, 96, (5,))
    assert added.prompt == {"points": [[1.0, 2.0]], "labels": [1]}
    assert isinstance(removed, PromptEvent) and removed.op == "remove" and removed.obj_ids == ()
    assert sub.recv(timeout=0.2) is None  # `list` changes nothing and announces nothing
    sub.close()


# ---------------------------------------------------------------- rtseg prompt
def test_prompt_cli(ctx, capsys):
    handler = FakeHandler()
    with serving(handler, ctx) as server:
        ep = server.endpoint
        assert rtseg_main(["prompt", "--endpoint", ep, "--camera", "cam", "points", "10,20", "5,5",
                           "--labels", "1", "0", "--obj", "1", "--frame", "99"]) == 0
        reply = json.loads(capsys.readouterr().out)
        assert (reply["frame_index"], reply["applied_to"], reply["obj_ids"]) == (99, "requested", [1])
        assert handler.calls[-1].labels.tolist() == [1, 0]
        assert rtseg_main(["prompt", "--endpoint", ep, "box", "1,2,30,40", "--obj", "2", "--camera", "cam"]) == 0
        assert json.loads(capsys.readouterr().out)["obj_ids"] == [1, 2]
        assert rtseg_main(["prompt", "--endpoint", ep, "list"]) == 0
        assert json.loads(capsys.readouterr().out)["cameras"]["cam"]["obj_ids"] == [1, 2]
        assert rtseg_main(["prompt", "--endpoint", ep, "--camera", "cam", "remove", "--obj", "9"]) == 1
        assert "[unknown_object]" in capsys.readouterr().err
        assert rtseg_main(["prompt", "--endpoint", ep, "reset"]) == 2
        assert "--camera is required" in capsys.readouterr().err
        assert rtseg_main(["prompt", "--endpoint", ep, "--camera", "cam", "points", "1,1", "2,2", "--labels", "1",
                           "--obj", "1"]) == 2
        assert rtseg_main(["prompt", "--endpoint", ep, "--camera", "cam", "reset"]) == 0
        assert json.loads(capsys.readouterr().out)["removed"] == [1, 2]


def test_prompt_cli_negative_coordinates_get_the_out_of_frame_error(ctx, capsys):
    handler = FakeHandler()
    with serving(handler, ctx) as server:
        for args in (["points", "-5,240"], ["points", "10,10", "-0.5,3", "--labels", "1", "0"], ["box", "-5,0,10,10"]):
            assert rtseg_main(["prompt", "--endpoint", server.endpoint, "--camera", "cam", *args, "--obj", "1"]) == 1
            err = capsys.readouterr().err
            assert "[invalid_value]" in err and "lies outside the" in err and "frame" in err, err
            assert "unrecognized arguments" not in err
    assert handler.calls == []  # refused by validation, the segmenter never saw it


def test_prompt_cli_mask_file(ctx, tmp_path, capsys):
    import cv2

    image = np.zeros((H, W), np.uint8)
    image[10:20, 10:30] = 255
    cv2.imwrite(str(tmp_path / "m.png"), image)
    handler = FakeHandler()
    with serving(handler, ctx) as server:
        assert rtseg_main(["prompt", "--endpoint", server.endpoint, "--camera", "cam", "mask", str(tmp_path / "m.png"),
                           "--obj", "3"]) == 0
    assert handler.calls[-1].mask.sum() == 200


def test_prompt_cli_timeout_and_bad_arguments(capsys):
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.ROUTER)  # someone listening who never answers
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    try:
        assert rtseg_main(["prompt", "--endpoint", f"tcp://127.0.0.1:{port}", "--timeout", "0.2", "status"]) == 3
        assert "no reply to status" in capsys.readouterr().err
    finally:
        sock.close(linger=0)
    with pytest.raises(SystemExit):
        rtseg_main(["prompt", "points", "10", "--obj", "1"])
    assert "a point (X,Y)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        rtseg_main(["prompt", "points", "1,1", "--labels", "3", "--obj", "1"])
    assert "labels are 1" in capsys.readouterr().err


def test_controller_reports_a_garbage_reply(ctx):
    router = ctx.socket(zmq.ROUTER)
    port = router.bind_to_random_port("tcp://127.0.0.1")

    def answer_garbage() -> None:
        if router.poll(5000):
            identity, empty, _ = router.recv_multipart()
            router.send_multipart([identity, empty, b"\xc1 not msgpack"])

    thread = threading.Thread(target=answer_garbage)
    thread.start()
    with Controller(f"tcp://127.0.0.1:{port}", context=ctx) as ctl:
        with pytest.raises(ControlError, match=r"\[bad_reply\].*undecodable"):
            ctl.status()
    thread.join()
    router.close()

"""ControlServer on real sockets: every request type answered, every kind of bad request
refused with a reply that names the problem, and the handler never sees a bad one."""
from __future__ import annotations

import time
from typing import Any, Iterator

import msgpack
import numpy as np
import pytest
import zmq

from rtseg.pipeline.control import (
    ControlServer,
    ErrorCode,
    RequestError,
)
from rtseg.protocol import PROTOCOL_VERSION, encode_rle
from tests.helpers.control import LATEST, H, W, FakeHandler, RawClient, request, serving

def valid_requests() -> list[dict[str, Any]]:
    mask = np.zeros((H, W), bool)
    mask[10:20, 5:40] = True
    return [
        request("add_points", camera="cam", obj_id=1, points=[[10, 20.5]], labels=[1]),
        request("add_box", camera="cam", obj_id=2, box=[1, 2, 30, 40], frame_index=97),
        request("add_mask", camera="cam", obj_id=3, mask=encode_rle(mask)),
        request("list"),
        request("status"),
        request("remove", camera="cam", obj_id=2),
        request("reset", camera="cam"),
    ]


@pytest.fixture
def served(ctx: zmq.Context) -> Iterator[tuple[FakeHandler, RawClient, ControlServer]]:
    handler = FakeHandler()
    with serving(handler, ctx, max_request_bytes=4096) as server:
        client = RawClient(ctx, server.endpoint)
        yield handler, client, server
        client.close()


# ---------------------------------------------------------------- valid requests
def test_every_request_type_round_trip(served):
    handler, client, server = served
    replies = [client.send(dict(r, id=n)) for n, r in enumerate(valid_requests())]
    for n, (req, reply) in enumerate(zip(valid_requests(), replies, strict=True)):
        assert reply["ok"] is True, reply
        assert (reply["v"], reply["type"], reply["id"]) == (PROTOCOL_VERSION, req["type"], n)
    points, box, mask, listed, status, removed, reset = replies
    assert points["frame_index"] == LATEST and points["applied_to"] == "latest"
    assert points["requested_frame_index"] is None and points["camera"] == "cam" and points["obj_id"] == 1
    assert box["frame_index"] == 97 and box["applied_to"] == "requested" and box["obj_ids"] == [1, 2]
    assert mask["obj_ids"] == [1, 2, 3]
    assert listed["cameras"] == {"cam": {"obj_ids": [1, 2, 3], "frame_size": [H, W]},
                                 "cam2": {"obj_ids": [], "frame_size": [20, 30]}}
    assert status["cameras"]["cam"]["fps"] == 30.0 and status["device"] == "cpu" and status["gpu_memory"] is None
    assert removed["obj_ids"] == [1, 3] and reset["removed"] == [1, 3]
    assert [c.type for c in handler.calls] == ["add_points", "add_box", "add_mask", "status", "remove", "reset"]
    assert handler.invalid == []
    first = handler.calls[0]
    np.testing.assert_array_equal(first.points, np.array([[10, 20.5]], np.float32))
    assert first.labels.tolist() == [1] and first.kind == "points"
    assert first.prompt_payload() == {"points": [[10.0, 20.5]], "labels": [1]}
    assert handler.calls[2].mask.sum() == 10 * 35 and handler.calls[2].prompt_payload()["mask"]["size"] == [H, W]
    assert server.stats["requests"] == 7 and server.stats["ok"] == 7


def test_prompt_on_a_frame_no_longer_held_goes_to_the_latest(served):
    _, client, _ = served
    reply = client.send(request("add_points", camera="cam", obj_id=1, points=[[1, 1]], labels=[0], frame_index=3))
    assert reply["ok"] and reply["frame_index"] == LATEST and reply["requested_frame_index"] == 3
    assert reply["applied_to"] == "latest"


def test_prompt_on_a_frame_newer_than_the_latest_is_refused_naming_both(served):
    handler, client, _ = served
    reply = client.send(request("add_box", camera="cam", obj_id=1, box=[1, 1, 9, 9], frame_index=LATEST + 5))
    assert not reply["ok"] and reply["error"]["code"] == "invalid_value" and reply["error"]["field"] == "frame_index"
    assert f"frame_index {LATEST + 5} is newer than the latest tracked frame {LATEST} of camera 'cam'" in \
        reply["error"]["message"]
    assert handler.known_objects("cam") == set()  # nothing changed
    assert client.send(request("add_box", camera="cam", obj_id=1, box=[1, 1, 9, 9], frame_index=LATEST))["ok"]


def test_edges_of_the_frame_are_inside(served):
    handler, client, _ = served
    reply = client.send(request("add_points", camera="cam", obj_id=1, points=[[0, 0], [W, H]], labels=[1, 0]))
    assert reply["ok"], reply
    assert client.send(request("add_box", camera="cam", obj_id=1, box=[0, 0, W, H]))["ok"]
    assert handler.invalid == []


# ---------------------------------------------------------------- refused requests
def _mask_rle(h: int, w: int) -> dict:
    m = np.zeros((h, w), bool)
    m[0, 0] = True
    return encode_rle(m)


NAN, INF = float("nan"), float("inf")
BAD_REQUESTS = [
    # (request, error code, field, text the message must contain)
    (b"\xc1\xc1 not msgpack", ErrorCode.BAD_ENCODING, None, "not msgpack"),
    (msgpack.packb([1, 2, 3]), ErrorCode.BAD_REQUEST, None, "must be a msgpack map"),
    (msgpack.packb({1: 2}), ErrorCode.BAD_ENCODING, None, "not msgpack"),
    (msgpack.packb("add_points"), ErrorCode.BAD_REQUEST, None, "got str"),
    (b"", ErrorCode.BAD_ENCODING, None, "not msgpack"),
    ({"type": "list"}, ErrorCode.UNSUPPORTED_VERSION, "v", "protocol version None"),
    (request("list") | {"v": 2}, ErrorCode.UNSUPPORTED_VERSION, "v", "version 2"),
    (request("explode"), ErrorCode.UNKNOWN_TYPE, "type", "'explode'"),
    (request(None), ErrorCode.UNKNOWN_TYPE, "type", "None"),
    (request("list", id=[1]), ErrorCode.BAD_REQUEST, "id", "id must be"),
    (request("reset"), ErrorCode.BAD_REQUEST, "camera", "needs field 'camera'"),
    (request("reset", camera="nope"), ErrorCode.UNKNOWN_CAMERA, "camera", "'nope'"),
    (request("list", camera=7), ErrorCode.UNKNOWN_CAMERA, "camera", "7"),
    (request("reset", camera="cam", obj_id=1), ErrorCode.BAD_REQUEST, "obj_id", "does not take"),
    (request("add_points", camera="cam", obj_id=1, point=[[1, 1]], labels=[1]), ErrorCode.BAD_REQUEST, "point",
     "does not take"),
    (request("add_points", camera="cam", points=[[1, 1]], labels=[1]), ErrorCode.BAD_REQUEST, "obj_id", "obj_id"),
    (request("add_points", camera="cam", obj_id="1", points=[[1, 1]], labels=[1]), ErrorCode.INVALID_VALUE,
     "obj_id", "'1'"),
    (request("add_points", camera="cam", obj_id=True, points=[[1, 1]], labels=[1]), ErrorCode.INVALID_VALUE,
     "obj_id", "True"),
    (request("add_points", camera="cam", obj_id=-1, points=[[1, 1]], labels=[1]), ErrorCode.INVALID_VALUE,
     "obj_id", "-1"),
    (request("add_points", camera="cam", obj_id=2**31, points=[[1, 1]], labels=[1]), ErrorCode.INVALID_VALUE,
     "obj_id", str(2**31)),
    (request("add_points", camera="cam", obj_id=1, points=[[1, 1]], labels=[1], frame_index=-4),
     ErrorCode.INVALID_VALUE, "frame_index", "-4"),
    (request("add_points", camera="cam", obj_id=1, points=[[1, 1]], labels=[1], frame_index=1.5),
     ErrorCode.INVALID_VALUE, "frame_index", "1.5"),
    (request("add_points", camera="cam", obj_id=1, points=[], labels=[]), ErrorCode.INVALID_VALUE, "points", "1..256"),
    (request("add_points", camera="cam", obj_id=1, points=[[1, 1]] * 257, labels=[1] * 257), ErrorCode.INVALID_VALUE,
     "points", "1..256"),
    (request("add_points", camera="cam", obj_id=1, points=[[NAN, 1]], labels=[1]), ErrorCode.INVALID_VALUE,
     "points[0]", "nan"),
    (request("add_points", camera="cam", obj_id=1, points=[[1, INF]], labels=[1]), ErrorCode.INVALID_VALUE,
     "points[0]", "inf"),
    (request("add_points", camera="cam", obj_id=1, points=[["1", 2]], labels=[1]), ErrorCode.INVALID_VALUE,
     "points[0]", "'1'"),
    (request("add_points", camera="cam", obj_id=1, points=[[1, 2, 3]], labels=[1]), ErrorCode.INVALID_VALUE,
     "points[0]", "[1, 2, 3]"),
    (request("add_points", camera="cam", obj_id=1, points=[1, 2], labels=[1, 1]), ErrorCode.INVALID_VALUE,
     "points[0]", "2 numbers"),
    (request("add_points", camera="cam", obj_id=1, points=[[5, 5], [W + 0.5, 5]], labels=[1, 1]),
     ErrorCode.INVALID_VALUE, "points[1]", f"outside the {W}x{H} frame"),
    (request("add_points", camera="cam", obj_id=1, points=[[5, -1]], labels=[1]), ErrorCode.INVALID_VALUE,
     "points[0]", "[5, -1]"),
    (request("add_points", camera="cam2", obj_id=1, points=[[40, 5]], labels=[1]), ErrorCode.INVALID_VALUE,
     "points[0]", "outside the 30x20 frame"),
    (request("add_points", camera="cam", obj_id=1, points=[[1, 1]], labels=[2]), ErrorCode.INVALID_VALUE,
     "labels", "[2]"),
    (request("add_points", camera="cam", obj_id=1, points=[[1, 1]], labels=[True]), ErrorCode.INVALID_VALUE,
     "labels", "[True]"),
    (request("add_points", camera="cam", obj_id=1, points=[[1, 1]], labels=[1.0]), ErrorCode.INVALID_VALUE,
     "labels", "[1.0]"),
    (request("add_points", camera="cam", obj_id=1, points=[[1, 1], [2, 2]], labels=[1]), ErrorCode.INVALID_VALUE,
     "labels", "one label per point"),
    (request("add_points", camera="cam", obj_id=1, points=[[1, 1]], labels=1), ErrorCode.INVALID_VALUE,
     "labels", "labels=1"),
    (request("add_box", camera="cam", obj_id=1, box=[10, 10, 5, 20]), ErrorCode.INVALID_VALUE, "box", "inverted"),
    (request("add_box", camera="cam", obj_id=1, box=[10, 10, 10, 20]), ErrorCode.INVALID_VALUE, "box", "empty"),
    (request("add_box", camera="cam", obj_id=1, box=[1, 20, 5, 10]), ErrorCode.INVALID_VALUE, "box", "y1 > y0"),
    (request("add_box", camera="cam", obj_id=1, box=[1, 0, 5, 1e-46]), ErrorCode.INVALID_VALUE, "box", "empty"),
    (request("add_box", camera="cam", obj_id=1, box=[1, 2, 3]), ErrorCode.INVALID_VALUE, "box", "4 numbers"),
    (request("add_box", camera="cam", obj_id=1, box=[1, 2, 3, NAN]), ErrorCode.INVALID_VALUE, "box", "finite"),
    (request("add_box", camera="cam", obj_id=1, box=[1, 2, W + 1, 9]), ErrorCode.INVALID_VALUE, "box", "outside"),
    (request("add_box", camera="cam", obj_id=1, box="1,2,3,4"), ErrorCode.INVALID_VALUE, "box", "'1,2,3,4'"),
    (request("add_mask", camera="cam", obj_id=1, mask=_mask_rle(H + 1, W)), ErrorCode.INVALID_VALUE, "mask",
     f"[{H + 1}, {W}] does not match"),
    (request("add_mask", camera="cam", obj_id=1, mask=encode_rle(np.zeros((H, W), bool))), ErrorCode.INVALID_VALUE,
     "mask", "empty"),
    (request("add_mask", camera="cam", obj_id=1, mask={"size": [H, W], "counts": "0"}), ErrorCode.INVALID_VALUE,
     "mask", "cover 0 pixels"),
    (request("add_mask", camera="cam", obj_id=1, mask={"size": [H, W], "counts": "P"}), ErrorCode.INVALID_VALUE,
     "mask", "truncated"),
    (request("add_mask", camera="cam", obj_id=1, mask=np.ones((H, W), np.uint8).tobytes()), ErrorCode.INVALID_VALUE,
     "mask", "COCO RLE"),
    (request("add_mask", camera="cam", obj_id=1, mask={"size": [H, W], "counts": [H * W + 1]}),
     ErrorCode.INVALID_VALUE, "mask", "counts"),
    (request("remove", camera="cam", obj_id=5), ErrorCode.UNKNOWN_OBJECT, "obj_id", "no object 5"),
]


@pytest.mark.parametrize(("payload", "code", "field", "text"), BAD_REQUESTS,
                         ids=[f"{i}-{c}" for i, (_, c, _, _) in enumerate(BAD_REQUESTS)])
def test_bad_request_is_refused_and_never_reaches_the_handler(served, payload, code, field, text):
    handler, client, server = served
    reply = client.send_bytes(payload) if isinstance(payload, bytes) else client.send(payload)
    assert reply["ok"] is False and reply["v"] == PROTOCOL_VERSION
    assert reply["error"]["code"] == code, reply
    assert reply["error"].get("field") == field, reply
    assert text in reply["error"]["message"], reply
    assert handler.calls == []
    assert client.send(request("list"))["ok"]  # and the server goes on
    assert server.stats[code] == 1


@pytest.mark.parametrize(("payload", "type_", "id_"), [
    (request("list", v=2, id=5), "list", 5),  # a bad version
    (request("list", id=[1]), "list", None),  # a bad id is not echoed, the type is
    (request("add_pointz", id="a"), "add_pointz", "a"),  # an unknown type, as sent
    (request("list", id=1) | {"type": 7}, None, 1),  # not a string: nothing to echo
    (request("list") | {"type": "x" * 65}, None, None),  # too long to echo
    (request("list", camera="nope", id=2), "list", 2),
])
def test_an_error_reply_echoes_the_requests_type_whenever_it_had_one(served, payload, type_, id_):
    _, client, _ = served
    reply = client.send(payload)
    assert reply["ok"] is False and (reply["type"], reply["id"]) == (type_, id_), reply


def test_error_reply_echoes_type_and_id(served):
    _, client, _ = served
    reply = client.send(request("add_box", camera="cam", obj_id=1, box=[3, 3, 1, 1], id="req-7"))
    assert (reply["type"], reply["id"], reply["error"]["code"]) == ("add_box", "req-7", ErrorCode.INVALID_VALUE)


def test_oversized_request_is_refused(served):
    handler, client, _ = served
    big = request("add_points", camera="cam", obj_id=1, points=[[1, 1]], labels=[1], id="x" * 200,
                  padding="y" * 5000)
    reply = client.send(big)
    assert reply["error"]["code"] == ErrorCode.PAYLOAD_TOO_LARGE and "4096" in reply["error"]["message"]
    assert handler.calls == []


def test_far_oversized_request_disconnects_only_that_peer(served, ctx):
    handler, client, server = served
    greedy = RawClient(ctx, server.endpoint)
    with pytest.raises(TimeoutError):
        greedy.send_bytes(b"z" * (3 * 4096), timeout_ms=500)
    greedy.close()
    assert client.send(request("list"))["ok"] and handler.calls == []


def test_camera_without_a_frame_yet_is_not_ready(ctx):
    handler = FakeHandler({"cam": None})
    with serving(handler, ctx) as server:
        client = RawClient(ctx, server.endpoint)
        reply = client.send(request("add_points", camera="cam", obj_id=1, points=[[1, 1]], labels=[1]))
        assert reply["error"]["code"] == ErrorCode.NOT_READY and "no frame yet" in reply["error"]["message"]
        assert client.send(request("list"))["cameras"] == {"cam": {"obj_ids": [], "frame_size": None}}
        client.close()
    assert handler.calls == []


@pytest.mark.parametrize(("failure", "code", "text"), [
    (RuntimeError("CUDA out of memory"), ErrorCode.HANDLER_ERROR, "RuntimeError: CUDA out of memory"),
    (RequestError(ErrorCode.NOT_READY, "model still loading"), ErrorCode.NOT_READY, "model still loading"),
])
def test_handler_failure_becomes_an_error_reply(served, failure, code, text, caplog):
    handler, client, _ = served
    handler.fail_with = failure
    reply = client.send(request("add_points", camera="cam", obj_id=1, points=[[1, 1]], labels=[1], id=3))
    assert (reply["ok"], reply["error"]["code"], reply["type"], reply["id"]) == (False, code, "add_points", 3)
    assert text in reply["error"]["message"]
    handler.fail_with = None
    assert client.send(request("status"))["ok"]


def test_server_fills_the_documented_reply_fields(served):
    handler, client, _ = served
    real = handler.handle
    handler.handle = lambda req: real(req) and {}  # type: ignore[method-assign]  # a terse handler
    assert client.send(request("add_box", camera="cam", obj_id=4, box=[1, 1, 9, 9]))["obj_ids"] == [4]
    assert client.send(request("add_box", camera="cam", obj_id=6, box=[1, 1, 9, 9]))["obj_ids"] == [4, 6]
    removed = client.send(request("remove", camera="cam", obj_id=4))
    assert (removed["camera"], removed["obj_id"], removed["obj_ids"]) == ("cam", 4, [6])
    reset = client.send(request("reset", camera="cam"))
    assert (reset["removed"], reset["obj_ids"]) == ([6], [])


def test_unserializable_handler_reply_is_an_error(served):
    handler, client, _ = served
    handler.handle = lambda req: {"thing": object()}  # type: ignore[method-assign]
    reply = client.send(request("status"))
    assert reply["error"]["code"] == ErrorCode.HANDLER_ERROR and "not serializable" in reply["error"]["message"]
    handler.handle = lambda req: ["not", "a", "dict"]  # type: ignore[method-assign]
    assert "not a dict" in client.send(request("status"))["error"]["message"]


def test_dealer_clients_with_or_without_delimiter(served, ctx):
    _, _, server = served
    dealer = ctx.socket(zmq.DEALER)
    dealer.linger = 0
    dealer.connect(server.endpoint)
    dealer.send_multipart([b"", msgpack.packb(request("list", id=1))])
    dealer.send_multipart([msgpack.packb(request("list", id=2))])
    dealer.send_multipart([b"", b"one", b"two"])
    replies = []
    for _ in range(3):
        assert dealer.poll(5000)
        frames = dealer.recv_multipart()
        replies.append((frames[:-1], msgpack.unpackb(frames[-1])))
    dealer.close()
    assert replies[0][0] == [b""] and replies[0][1]["id"] == 1
    assert replies[1][0] == [] and replies[1][1]["id"] == 2
    assert replies[2][1]["error"]["code"] == ErrorCode.BAD_REQUEST and "2 frames" in replies[2][1]["error"]["message"]


def test_many_clients_at_once(served, ctx):
    handler, _, server = served
    clients = [RawClient(ctx, server.endpoint) for _ in range(6)]
    for n, c in enumerate(clients):
        c.socket.send(msgpack.packb(request("add_points", camera="cam", obj_id=n, points=[[n, n]], labels=[1], id=n)))
    for n, c in enumerate(clients):
        assert c.socket.poll(5000)
        reply = msgpack.unpackb(c.socket.recv())
        assert reply["ok"] and reply["id"] == n and reply["obj_id"] == n
        c.close()
    assert handler.objects["cam"] == set(range(6))


def test_poll_once_serves_from_the_callers_loop(ctx):
    handler = FakeHandler()
    with ControlServer("tcp://127.0.0.1:*", handler, context=ctx) as server:
        assert server.poll_once(0) == 0
        clients = [RawClient(ctx, server.endpoint) for _ in range(3)]
        for c in clients:
            c.socket.send(msgpack.packb(request("list")))
        deadline, answered = time.monotonic() + 5, 0
        while answered < 3 and time.monotonic() < deadline:
            answered += server.poll_once(100)
        assert answered == 3
        for c in clients:
            assert c.socket.poll(1000) and msgpack.unpackb(c.socket.recv())["ok"]
            c.close()


def test_bind_failure_names_the_endpoint(ctx):
    with ControlServer("tcp://127.0.0.1:*", FakeHandler(), context=ctx) as server:
        with pytest.raises(OSError, match="control socket.*network.control"):
            ControlServer(server.endpoint, FakeHandler(), context=ctx)

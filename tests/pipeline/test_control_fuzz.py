"""Fuzz a real ControlServer over tcp loopback: garbage bytes, arbitrary msgpack and
near-valid requests with nasty fields. Every request gets a well-formed reply, the handler
never receives an invalid request, and a valid request is still answered afterwards."""
from __future__ import annotations

from typing import Any, Iterator

import msgpack
import numpy as np
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rtseg.pipeline.control import ErrorCode
from rtseg.protocol import encode_rle
from tests.helpers.control import H, W, FakeHandler, RawClient, request, serving

ERROR_CODES = {v for k, v in vars(ErrorCode).items() if k.isupper()}
FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def fuzz_target() -> Iterator[tuple[FakeHandler, RawClient]]:
    context = zmq.Context()
    handler = FakeHandler()
    with serving(handler, context, max_request_bytes=64 * 1024) as server:
        client = RawClient(context, server.endpoint)
        yield handler, client
        client.close()
    context.destroy(linger=0)


def assert_well_formed(reply: Any) -> None:
    assert isinstance(reply, dict) and reply["v"] == 1 and isinstance(reply["ok"], bool)
    if not reply["ok"]:
        assert reply["error"]["code"] in ERROR_CODES, reply
        assert isinstance(reply["error"]["message"], str) and reply["error"]["message"]
        assert reply["error"]["code"] != ErrorCode.HANDLER_ERROR, reply  # validation caught it first


def finish(handler: FakeHandler, client: RawClient) -> None:
    assert handler.invalid == [], handler.invalid[:3]
    reply = client.send(request("add_points", camera="cam", obj_id=7, points=[[3, 4]], labels=[1]))
    assert reply["ok"] and reply["frame_index"] == 100


scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(allow_nan=True, allow_infinity=True),
    st.floats(-50, 2 * W), st.integers(-3, 2 * W), st.text(max_size=12), st.binary(max_size=12))
msgpack_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=20)
coordinate = st.one_of(st.floats(-10, W + 10), st.integers(-5, W + 5), st.floats(allow_nan=True), scalars)
points = st.lists(st.lists(coordinate, min_size=0, max_size=3), min_size=0, max_size=4)
labels = st.lists(st.one_of(st.sampled_from([0, 1, 2, -1, True, 1.0]), scalars), max_size=4)
box = st.lists(coordinate, min_size=3, max_size=5)


@st.composite
def rle_like(draw: st.DrawFn) -> Any:
    h = draw(st.sampled_from([H, H + 1, 0, 1]))
    w = draw(st.sampled_from([W, W - 1, 1]))
    counts = draw(st.one_of(
        st.text(st.characters(min_codepoint=40, max_codepoint=120), max_size=16),
        st.lists(st.integers(-2, H * W + 2), max_size=6), scalars))
    size = draw(st.sampled_from([[h, w], [h], [str(h), w], None]))
    return draw(st.sampled_from([{"size": size, "counts": counts}, {"counts": counts}, counts]))


def base_requests() -> list[dict[str, Any]]:
    mask = np.zeros((H, W), bool)
    mask[4:9, 4:9] = True
    return [
        request("add_points", camera="cam", obj_id=1, points=[[10, 20]], labels=[1], frame_index=97),
        request("add_box", camera="cam", obj_id=2, box=[1, 2, 30, 40]),
        request("add_mask", camera="cam", obj_id=3, mask=encode_rle(mask)),
        request("remove", camera="cam", obj_id=1),
        request("reset", camera="cam2"),
        request("list", camera="cam"),
        request("status"),
    ]


FIELDS = ["v", "type", "id", "camera", "obj_id", "frame_index", "points", "labels", "box", "mask", "extra"]
FIELD_VALUES = {"points": points, "labels": labels, "box": box, "mask": rle_like(),
                "camera": st.sampled_from(["cam", "cam2", "", "CAM", "cam "]) | scalars,
                "type": st.sampled_from(["add_points", "add_box", "add_mask", "remove", "reset", "list",
                                         "status", "ADD_POINTS", ""]) | scalars,
                "v": st.sampled_from([1, 0, 2, 1.0, "1", True]),
                "obj_id": st.integers(-2, 2**31 + 1) | scalars, "frame_index": st.integers(-2, 200) | scalars}


@st.composite
def near_valid(draw: st.DrawFn) -> dict[str, Any]:
    req = dict(draw(st.sampled_from(base_requests())))
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.sampled_from(FIELDS))
        if draw(st.booleans()) and key in req:
            del req[key]
        else:
            req[key] = draw(FIELD_VALUES.get(key, msgpack_values))
    return req


def test_fuzz_garbage_bytes(fuzz_target):
    handler, client = fuzz_target

    @FUZZ
    @given(st.binary(max_size=300))
    def run(data: bytes) -> None:
        assert_well_formed(client.send_bytes(data))
        assert handler.invalid == []

    run()
    finish(handler, client)


def test_fuzz_arbitrary_msgpack(fuzz_target):
    handler, client = fuzz_target

    @FUZZ
    @given(msgpack_values)
    def run(value: Any) -> None:
        assert_well_formed(client.send_bytes(msgpack.packb(value, use_bin_type=True)))
        assert handler.invalid == []

    run()
    finish(handler, client)


def _sometimes(draw: st.DrawFn, good: st.SearchStrategy, bad: st.SearchStrategy, odds: int = 6) -> Any:
    """Mostly a good value, one time in `odds` a bad one."""
    return draw(bad) if draw(st.integers(1, odds)) == 1 else draw(good)


bad_number = st.sampled_from([float("nan"), float("inf"), -float("inf"), -0.5, -1, W + 0.01, H * 10, 2**64 - 1,
                              True, None, "3", [1], b"1"])


@st.composite
def mostly_valid(draw: st.DrawFn) -> dict[str, Any]:
    """A well-shaped prompt with an occasional bad part: reaches the deep checks."""
    kind = draw(st.sampled_from(["add_points", "add_box", "add_mask", "remove"]))
    req = request(kind, camera=_sometimes(draw, st.just("cam"), st.sampled_from(["cam2", "x", 1, None]), 10),
                  obj_id=_sometimes(draw, st.integers(0, 4), st.sampled_from([-1, 2**31, 1.0, "2", None]), 10))
    if draw(st.booleans()):
        req["frame_index"] = _sometimes(draw, st.integers(0, 120), st.sampled_from([-1, 2.5, "9"]), 10)
    if kind == "add_points":
        n = draw(st.integers(1, 4))
        req["points"] = [[_sometimes(draw, st.floats(0, W), bad_number), _sometimes(draw, st.floats(0, H), bad_number)]
                         for _ in range(n)]
        req["labels"] = [_sometimes(draw, st.sampled_from([0, 1]), st.sampled_from([2, -1, True, 1.0, "1"]), 8)
                         for _ in range(_sometimes(draw, st.just(n), st.integers(0, 5), 10))]
    elif kind == "add_box":
        req["box"] = [_sometimes(draw, st.floats(-2, lim + 2), bad_number, 10) for lim in (W, H, W, H)]
    elif kind == "add_mask":
        mask = np.zeros((H, W), bool)
        y0, x0 = draw(st.integers(0, H - 1)), draw(st.integers(0, W - 1))
        mask[y0:y0 + draw(st.integers(0, 9)), x0:x0 + draw(st.integers(0, 9))] = True
        rle = encode_rle(mask)
        if draw(st.integers(1, 4)) == 1:
            text = list(rle["counts"])
            text[draw(st.integers(0, len(text) - 1))] = chr(draw(st.integers(40, 120)))
            rle["counts"] = "".join(text)
        if draw(st.integers(1, 8)) == 1:
            rle["size"] = draw(st.sampled_from([[W, H], [H, W + 1], [H], "x"]))
        req["mask"] = rle
    return req


def _run_fuzz(client: RawClient, handler: FakeHandler, strategy: st.SearchStrategy, examples: int) -> dict[str, int]:
    outcomes: dict[str, int] = {}

    @settings(FUZZ, max_examples=examples)
    @given(strategy)
    def run(req: dict[str, Any]) -> None:
        reply = client.send(req)
        assert_well_formed(reply)
        assert handler.invalid == [], handler.invalid
        key = "ok" if reply["ok"] else reply["error"]["code"]
        outcomes[key] = outcomes.get(key, 0) + 1

    run()
    finish(handler, client)
    return outcomes


def test_fuzz_near_valid_requests(fuzz_target):
    handler, client = fuzz_target
    outcomes = _run_fuzz(client, handler, near_valid(), 800)
    for code in (ErrorCode.INVALID_VALUE, ErrorCode.BAD_REQUEST, ErrorCode.UNKNOWN_TYPE, ErrorCode.UNKNOWN_CAMERA,
                 ErrorCode.UNSUPPORTED_VERSION):  # the fuzz reached every kind of check
        assert outcomes.get(code, 0) > 5, outcomes


def test_fuzz_mostly_valid_prompts(fuzz_target):
    handler, client = fuzz_target
    outcomes = _run_fuzz(client, handler, mostly_valid(), 1200)
    assert outcomes.get("ok", 0) > 100 and outcomes.get(ErrorCode.INVALID_VALUE, 0) > 100, outcomes
    assert outcomes.get(ErrorCode.UNKNOWN_OBJECT, 0) > 5, outcomes

"""Protocol: a round trip for every message type, COCO RLE that pycocotools agrees with, and
RLE from an untrusted peer that can never make the decoder read or write out of bounds."""
from __future__ import annotations

import warnings

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycocotools import mask as coco_mask

from rtseg.protocol import (
    PROTOCOL_VERSION,
    CameraStatus,
    FrameMessage,
    MasksMessage,
    PromptEvent,
    ProtocolError,
    RLEError,
    StatusMessage,
    decode_rle,
    encode_rle,
    encode_rles,
    pack,
    rle_counts,
    topic_for,
    unpack,
)


def coco_decode(rle) -> np.ndarray:
    """pycocotools' own decoder (2.0.11 warns under numpy 2 inside its Cython code)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "__array__ implementation", DeprecationWarning)
        return coco_mask.decode(rle).astype(bool)


def blob_masks(h: int = 48, w: int = 64) -> np.ndarray:
    masks = np.zeros((2, h, w), bool)
    masks[0, 5:20, 10:30] = True
    masks[1, 30:, 40:] = True
    return masks


def make_masks_message(camera: str = "cam") -> MasksMessage:
    masks = blob_masks()
    return MasksMessage.from_arrays(
        camera, 17, obj_ids=[3, 9], masks=masks, scores=[4.5, -1.25],
        boxes=np.array([[10, 5, 29, 19], [40, 30, 63, 47]], np.float32),
        capture_ns=1_000, capture_wall_ns=1_700_000_000_000_000_000, processed_ns=2_000,
        latency_ms={"wait": 0.5, "model": 12.25}, skipped_total=4, skipped_since_last=1)


# ---------------------------------------------------------------- round trips, one per type
def test_masks_round_trip():
    msg = make_masks_message()
    parts = pack(msg)
    assert parts[0] == b"masks.cam" and len(parts) == 2
    body = msgpack.unpackb(parts[1])
    assert body["v"] == PROTOCOL_VERSION and body["type"] == "masks" and body["camera"] == "cam"
    assert isinstance(body["objects"][0]["mask"]["counts"], str)  # COCO JSON style
    back = unpack(parts)
    assert back == msg
    assert [o.obj_id for o in back.objects] == [3, 9]
    assert back.objects[0].area == 15 * 20 and back.objects[1].box == (40.0, 30.0, 63.0, 47.0)
    for obj, expected in zip(back.objects, blob_masks(), strict=True):
        np.testing.assert_array_equal(obj.mask(), expected)
        np.testing.assert_array_equal(coco_decode(obj.rle), expected)


def test_masks_round_trip_without_objects():
    msg = MasksMessage.from_arrays("cam", 0, obj_ids=[], masks=np.zeros((0, 10, 20), bool), scores=[],
                                   boxes=np.zeros((0, 4)), capture_ns=1, capture_wall_ns=2, processed_ns=3)
    back = unpack(pack(msg))
    assert back == msg and back.objects == () and (back.width, back.height) == (20, 10)


def test_frame_round_trip():
    yy, xx = np.mgrid[0:60, 0:80]
    rgb = np.stack([xx * 3, yy * 4, np.full_like(xx, 200)], axis=-1).astype(np.uint8)
    msg = FrameMessage.from_image("cam", 5, rgb, capture_ns=10, capture_wall_ns=20, quality=95)
    parts = pack(msg)
    assert parts[0] == b"frame.cam" and len(parts) == 3 and parts[2][:2] == b"\xff\xd8"  # JPEG magic
    back = unpack(parts)
    assert back == msg
    image = back.image()
    assert image.shape == (60, 80, 3)
    assert np.abs(image.astype(int) - rgb).mean() < 3  # RGB order kept, JPEG loss small


def test_prompt_event_round_trip():
    msg = PromptEvent("cam", "add_points", 1, 40, 38, {"points": [[1.0, 2.0]], "labels": [1]}, (1, 2), 123)
    assert pack(msg)[0] == b"prompt.cam"
    assert unpack(pack(msg)) == msg
    reset = PromptEvent("cam", "reset", None, None, None, {}, (), 5)
    assert unpack(pack(reset)) == reset


def test_status_round_trip():
    msg = StatusMessage(
        cameras={"a": CameraStatus(fps=29.5, latency_p50_ms=21.0, latency_p99_ms=40.5, frames_processed=100,
                                   frames_skipped=3, frame_index=102, obj_ids=(1, 2), source_state="connected"),
                 "b": CameraStatus(source_state="reconnecting")},
        gpu_memory={"allocated_bytes": 1 << 30, "reserved_bytes": 2 << 30}, publisher={"sent": 10, "dropped": 0},
        device="cuda:0", uptime_s=12.5)
    parts = pack(msg)
    assert parts[0] == b"status" and msgpack.unpackb(parts[1])["camera"] is None
    assert unpack(parts) == msg


def test_seq_and_published_ns_survive():
    import dataclasses

    msg = dataclasses.replace(make_masks_message(), seq=41, published_ns=99)
    back = unpack(pack(msg))
    assert (back.seq, back.published_ns) == (41, 99)


def test_topics():
    assert topic_for("masks", "cam1") == b"masks.cam1" and topic_for("status") == b"status"
    with pytest.raises(ValueError, match="needs a camera"):
        topic_for("frame")
    with pytest.raises(ValueError, match="unknown topic kind"):
        topic_for("nope", "cam")


# ---------------------------------------------------------------- unpack refuses bad messages
def _body(**changes):
    body = msgpack.unpackb(pack(make_masks_message())[1])
    body.update(changes)
    return msgpack.packb({k: v for k, v in body.items() if v is not ...})


@pytest.mark.parametrize(("parts", "match"), [
    ([b"masks.cam"], "at least"),
    ([b"masks.cam", b"\xc1garbage"], "not msgpack"),
    ([b"masks.cam", msgpack.packb([1, 2])], "must be a map"),
    ([b"masks.cam", _body(v=2)], "protocol version 2"),
    ([b"masks.cam", _body(type="video")], "unknown message type"),
    ([b"masks.other", _body()], "does not match"),
    ([b"masks.cam", _body(frame_index="7")], "frame_index"),
    ([b"masks.cam", _body(width=...)], "width"),
    ([b"masks.cam", _body(objects=[{"id": 1}])], "'box' is missing"),
    ([b"masks.cam", _body(objects=[{"id": 1, "score": 1.0, "box": [1, 2, 3], "area": 1, "mask": {}}])],
     r"\[x0, y0, x1, y1\]"),
    ([b"masks.cam", _body(camera=None)], "does not match|needs a camera"),
    ([b"frame.cam", msgpack.packb({**msgpack.unpackb(pack(FrameMessage("cam", 1, 2, 2, 0, 0, b"x"))[1])})],
     "raw JPEG part"),
])
def test_unpack_rejects(parts, match):
    with pytest.raises(ProtocolError, match=match):
        unpack(parts)


# ---------------------------------------------------------------- COCO RLE
@pytest.mark.parametrize("shape", [(1, 1), (1, 37), (29, 1), (48, 64), (480, 640)])
@pytest.mark.parametrize("fill", ["empty", "full", "noise", "blob"])
def test_rle_matches_pycocotools(shape, fill):
    rng = np.random.default_rng(hash((shape, fill)) % 2**32)
    mask = {"empty": np.zeros(shape, bool), "full": np.ones(shape, bool),
            "noise": rng.random(shape) < 0.5, "blob": np.zeros(shape, bool)}[fill]
    if fill == "blob":
        mask[shape[0] // 3:, shape[1] // 4: shape[1] // 2 + 1] = True
    rle = encode_rle(mask)
    assert rle["size"] == list(shape) and isinstance(rle["counts"], str)
    reference = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    assert rle["counts"] == reference["counts"].decode()
    np.testing.assert_array_equal(decode_rle(rle), mask)
    np.testing.assert_array_equal(decode_rle(reference), mask)  # bytes counts too
    _, counts = rle_counts(rle)
    np.testing.assert_array_equal(decode_rle({"size": list(shape), "counts": counts.tolist()}), mask)
    assert coco_mask.area(reference) == mask.sum()


def test_encode_rles_batches():
    masks = blob_masks()
    assert encode_rles(masks) == [encode_rle(m) for m in masks]
    assert encode_rles(np.zeros((0, 4, 4), bool)) == []


@pytest.mark.parametrize(("rle", "match"), [
    ({"size": [2, 2], "counts": "0"}, "cover 0 pixels"),  # pycocotools decodes this to garbage
    ({"size": [2, 2], "counts": "P"}, "truncated"),  # pycocotools reads past the end
    ({"size": [2, 2], "counts": "!!"}, "characters outside"),
    ({"size": [2, 2], "counts": "é"}, "ASCII"),
    ({"size": [2, 2], "counts": "5"}, r"run outside \[0, 4\]"),  # overruns a 4-pixel mask
    ({"size": [2, 2], "counts": "12"}, "cover 3 pixels"),
    ({"size": [2, 2], "counts": "PPPPPPPP0"}, "too large"),
    ({"size": [2, 2], "counts": [1, 2]}, "cover 3"),
    ({"size": [2, 2], "counts": [5, -1]}, r"in \[0, 4\]"),
    ({"size": [2, 2], "counts": [True, 3]}, "list of integers"),
    ({"size": [2, 2], "counts": 4}, "compressed string or a list"),
    ({"size": [0, 2], "counts": []}, "positive integers"),
    ({"size": [2], "counts": "4"}, "height, width"),
    ({"size": [2, 2]}, "COCO RLE"),
    ([4], "COCO RLE"),
])
def test_rle_rejects_malformed(rle, match):
    with pytest.raises(RLEError, match=match):
        decode_rle(rle)


def _agrees_with_pycocotools(h: int, w: int, counts: str) -> bool:
    """Our checked parser and pycocotools agree on every string we accept. True if accepted."""
    rle = {"size": [h, w], "counts": counts}
    try:
        ours = decode_rle(rle)
    except RLEError:
        return False
    np.testing.assert_array_equal(coco_decode(rle), ours)
    return True


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 12), st.integers(1, 12), st.text(st.characters(min_codepoint=48, max_codepoint=111), max_size=12))
def test_random_rle_strings_are_refused_or_decoded_like_pycocotools(h, w, counts):
    _agrees_with_pycocotools(h, w, counts)


def test_mutated_rle_strings_are_refused_or_decoded_like_pycocotools():
    """Valid encodings with one character replaced, inserted or deleted: some stay valid
    (and must decode exactly as pycocotools does), most do not (and must be refused)."""
    rng = np.random.default_rng(0)
    accepted = refused = 0
    for _ in range(1500):
        h, w = (int(v) for v in rng.integers(1, 16, size=2))
        mask = rng.random((h, w)) < rng.random()
        text = list(encode_rle(mask)["counts"])
        pos = int(rng.integers(0, len(text) + 1))
        char = chr(int(rng.integers(48, 112)))
        op = rng.integers(0, 3)
        if op == 0 and pos < len(text):
            text[pos] = char
        elif op == 1:
            text.insert(pos, char)
        elif text:
            text.pop(min(pos, len(text) - 1))
        if _agrees_with_pycocotools(h, w, "".join(text)):
            accepted += 1
        else:
            refused += 1
    assert accepted >= 10 and refused > 1000, (accepted, refused)


def _coco_counts_string(runs: list[int]) -> str:
    """pycocotools' rleToString, written out: runs from the third on as deltas to two back."""
    out = []
    for i, run in enumerate(runs):
        x = run - runs[i - 2] if i > 2 else run
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = x != -1 if c & 0x10 else x != 0
            out.append(chr((c | 0x20 if more else c) + 48))
    return "".join(out)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 40), min_size=1, max_size=30))
def test_any_run_lengths_decode_like_pycocotools(runs):
    """Runs pycocotools' encoder never writes (zero-length runs, long deltas) still agree."""
    h, w = 1, sum(runs)
    if w == 0:
        return
    text = _coco_counts_string(runs)
    assert _agrees_with_pycocotools(h, w, text)
    assert rle_counts({"size": [h, w], "counts": text})[1].tolist() == runs


def test_every_message_type_carries_the_run_stream_id_in_its_header():
    import dataclasses

    from rtseg.protocol import _BY_TYPE, pack, unpack

    for cls in _BY_TYPE.values():
        assert "stream" in {f.name for f in dataclasses.fields(cls)}, f"{cls.__name__} has no stream field"
    msg = StatusMessage(cameras={"cam": CameraStatus(source_state="reconnecting", source_attempt=2,
                                                     source_message="read timeout")})
    back = unpack(pack(dataclasses.replace(msg, stream="0123456789abcdef", seq=4)))
    assert back.stream == "0123456789abcdef" and back.seq == 4
    assert (back.cameras["cam"].source_attempt, back.cameras["cam"].source_message) == (2, "read timeout")
    assert msgpack.unpackb(pack(msg)[1])["stream"] == ""  # a publisher outside `rtseg run`

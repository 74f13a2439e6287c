"""Live Foxglove: a real Publisher -> FoxgloveBridge (foxglove-sdk server) -> a real WebSocket
client speaking the Foxglove protocol, decoding every message with its advertised schema."""
from __future__ import annotations

import os
import shutil
import time
from http.client import HTTPConnection
from pathlib import Path

import cv2
import numpy as np
import pytest
from foxglove_schemas_protobuf.CompressedImage_pb2 import CompressedImage
from foxglove_schemas_protobuf.ImageAnnotations_pb2 import ImageAnnotations
from websockets.exceptions import InvalidStatus

from rtseg.bridges.foxglove import FoxgloveBridge
from rtseg.ring import RingWriter
from rtseg.sources.base import Frame
from rtseg.view.overlay import object_color
from tests.helpers.foxglove_checks import assert_polygons_on_masks, metadata
from tests.helpers.foxglove_client import FoxgloveClient
from tests.helpers.scene import SceneThread

H, W = 96, 128  # the `publishing` fixture's frame size (conftest.py)


@pytest.mark.parametrize(("offered", "answered"), [
    (["foxglove.websocket.v1"], "foxglove.websocket.v1"),  # older Foxglove Studio, Lichtblick, roslibjs-foxglove
    (["foxglove.sdk.v1"], "foxglove.sdk.v1"),  # current Foxglove
    (["foxglove.websocket.v1", "foxglove.sdk.v1"], "foxglove.sdk.v1"),  # both offered: the SDK's name
])
def test_foxglove_client_sees_video_masks_events_and_status(publishing, offered, answered):
    with FoxgloveBridge(publishing.endpoint, cameras=["cam"], port=0) as bridge:
        with FoxgloveClient(f"ws://127.0.0.1:{bridge.port}", subprotocols=offered) as client:
            assert client.subprotocol == answered
            got = client.collect({"/cam/masks": 5, "/cam/image": 5, "/cam/events": 1, "/rtseg/status": 1,
                                  "/cam/object_events": 1}, timeout=15)
            assert client.server_info["name"] == "rtseg"
    assert {t: len(v) >= n for (t, v), n in zip(got.items(), (5, 5, 1, 1, 1))} == dict.fromkeys(got, True), \
        {t: len(v) for t, v in got.items()}
    ch = client.channels
    assert (ch["/cam/masks"]["schemaName"], ch["/cam/image"]["schemaName"]) == \
        ("foxglove.ImageAnnotations", "foxglove.CompressedImage")

    stamps = {}
    for payload in got["/cam/masks"]:
        ann = client.decode("/cam/masks", payload)
        assert ann.SerializeToString() == ImageAnnotations.FromString(payload).SerializeToString()
        index = assert_polygons_on_masks(ImageAnnotations.FromString(payload), H, W)
        stamps[(ann.timestamp.seconds, ann.timestamp.nanos)] = index
        assert metadata(ann)["camera"] == "cam"
        texts = {t.text.split()[0]: t.text for t in ann.texts}
        assert texts["1"] == "1 +3.50 visible"
        assert texts["7"] == ("7 +0.50 visible" if index % 2 else "7 -0.50 hidden")
    matched = 0
    for payload in got["/cam/image"]:
        img = CompressedImage.FromString(payload)
        assert (img.format, img.frame_id) == ("jpeg", "cam")
        rgb = cv2.imdecode(np.frombuffer(img.data, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
        assert rgb.shape == (H, W, 3)
        matched += (img.timestamp.seconds, img.timestamp.nanos) in stamps
    assert matched >= 3, "frames and their masks must carry the same timestamp"
    event = client.decode("/cam/events", got["/cam/events"][0])
    assert (event["op"], event["camera"], event["obj_ids"]) == ("add_points", "cam", [1, 7])
    assert client.decode("/rtseg/status", got["/rtseg/status"][0])["device"] == "cpu"
    assert client.channels["/cam/object_events"]["schemaName"] == "rtseg.ObjectEvent"
    lifecycle = client.decode("/cam/object_events", got["/cam/object_events"][0])
    assert (lifecycle["camera"], lifecycle["event"], lifecycle["obj_id"], lifecycle["state"],
            lifecycle["previous_state"], lifecycle["box"]) == ("cam", "occluded", 7, "occluded", "tracking",
                                                               [1.0, 2.0, 30.0, 40.0])


def test_a_client_offering_another_protocol_is_refused(publishing):
    """Only the two names of the Foxglove protocol are served: another subprotocol, or none
    (a plain HTTP request), is refused at the handshake with 400, not left hanging."""
    with FoxgloveBridge(publishing.endpoint, cameras=["cam"], port=0) as bridge:
        with pytest.raises(InvalidStatus) as refused:
            FoxgloveClient(f"ws://127.0.0.1:{bridge.port}", subprotocols=["foxglove.websocket.v2"])
        assert refused.value.response.status_code == 400
        http = HTTPConnection("127.0.0.1", bridge.port, timeout=5)
        http.request("GET", "/")
        assert http.getresponse().status == 400
        http.close()


def test_a_port_in_use_is_an_error_that_names_it():
    with FoxgloveBridge("tcp://127.0.0.1:1", cameras=["cam"], port=0) as first:
        with pytest.raises(OSError, match=f"127.0.0.1:{first.port}.*in use"):
            FoxgloveBridge("tcp://127.0.0.1:1", cameras=["cam"], port=first.port).start()


def test_ring_frames_are_encoded_only_while_someone_watches(ring):
    with RingWriter(ring, slots=4, source_id="cam") as writer:
        def write(i: int) -> None:
            image = np.zeros((H, W, 3), np.uint8)
            image[:, : W // 2] = (200, 30, 30)
            writer.write(Frame(image, "cam", i, time.monotonic_ns(), time.time_ns(), W, H))

        write(0)
        # no publisher needed for frames: the bridge reads the ring (masks would come from pub)
        with FoxgloveBridge("tcp://127.0.0.1:1", cameras=["cam"], rings={"cam": ring}, port=0, fps=20) as bridge:
            for i in range(1, 10):
                write(i)
                time.sleep(0.05)
            assert bridge.stats()["ring_frames"] == 0
            with FoxgloveClient(f"ws://127.0.0.1:{bridge.port}") as client:
                deadline = time.monotonic() + 10
                images = []
                i = 10
                while len(images) < 3 and time.monotonic() < deadline:
                    write(i)
                    i += 1
                    images += client.collect({"/cam/image": 1}, timeout=0.1)["/cam/image"]
            assert len(images) >= 3
    img = CompressedImage.FromString(images[-1])
    rgb = cv2.imdecode(np.frombuffer(img.data, np.uint8), cv2.IMREAD_COLOR)[..., ::-1].astype(int)
    assert np.abs(rgb[H // 2, W // 4] - (200, 30, 30)).max() < 12 and rgb[H // 2, 3 * W // 4].max() < 12


def test_polygons_follow_real_shapes_and_draw_like_foxglove(tmp_path):
    """The synthetic scene's shapes (circle, square, triangle, occluding each other): a
    Foxglove client's picture — decoded image, decoded polygons filled and outlined, labels —
    covers each object's true mask (IoU >= 0.9). Saved as docs/foxglove.png with RTSEG_WRITE_DOCS=1."""
    scene = SceneThread("demo", 320, 240, rate_hz=10)
    scene.start()
    try:
        assert scene.ready.wait(10)
        with FoxgloveBridge(scene.endpoint, cameras=["demo"], port=0) as bridge:
            with FoxgloveClient(f"ws://127.0.0.1:{bridge.port}") as client:
                got = client.collect({"/demo/masks": 3, "/demo/image": 3}, timeout=15)
    finally:
        scene.stop()
    anns = {(a.timestamp.seconds, a.timestamp.nanos): a for a in map(ImageAnnotations.FromString, got["/demo/masks"])}
    img = next(i for i in map(CompressedImage.FromString, got["/demo/image"])
               if (i.timestamp.seconds, i.timestamp.nanos) in anns)
    ann = anns[(img.timestamp.seconds, img.timestamp.nanos)]
    truth = scene.scene.masks(int(metadata(ann)["frame_index"]))
    picture = cv2.imdecode(np.frombuffer(img.data, np.uint8), cv2.IMREAD_COLOR)[..., ::-1].copy()
    overlay = picture.copy()
    by_colour = {object_color(i): i for i in truth}
    filled = {i: np.zeros(picture.shape[:2], np.uint8) for i in truth}
    for poly in ann.points:
        obj = by_colour[tuple(round(v * 255) for v in (poly.outline_color.r, poly.outline_color.g, poly.outline_color.b))]
        pts = np.round(np.array([[p.x, p.y] for p in poly.points]) - 0.5).astype(np.int32)
        cv2.fillPoly(filled[obj], [pts], 1)
        cv2.fillPoly(overlay, [pts], object_color(obj))
        cv2.polylines(picture, [pts], True, object_color(obj), 2)
    for obj, mask in truth.items():
        iou = np.logical_and(filled[obj], mask).sum() / np.logical_or(filled[obj], mask).sum()
        assert iou >= 0.9, f"object {obj}: polygons cover IoU {iou:.2f} of its mask"
    picture = cv2.addWeighted(overlay, 0.35, picture, 0.65, 0)
    for t in ann.texts:
        x, y = int(t.position.x), int(t.position.y)
        cv2.rectangle(picture, (x, y), (x + 8 * len(t.text), y + 16), object_color(int(t.text.split()[0])), -1)
        cv2.putText(picture, t.text, (x + 2, y + 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
    cv2.imwrite(str(tmp_path / "foxglove.png"), picture[..., ::-1])
    if os.environ.get("RTSEG_WRITE_DOCS"):
        shutil.copy(tmp_path / "foxglove.png", Path(__file__).resolve().parents[2] / "docs" / "foxglove.png")


def test_labels_carry_the_segmenters_lifecycle_state():
    """With lifecycle states in the masks message, the label says the segmenter's state
    (occluded, lost, ...) instead of a guess from the score."""
    from rtseg.bridges.foxglove_messages import image_annotations
    from rtseg.protocol import MasksMessage

    masks = np.zeros((2, H, W), bool)
    masks[0, 10:30, 10:40] = True
    msg = MasksMessage.from_arrays("cam", 3, obj_ids=[1, 7], masks=masks, scores=[2.0, -1.0],
                                   boxes=np.array([[10, 10, 40, 30], [0, 0, 0, 0]]), capture_ns=1,
                                   capture_wall_ns=2, processed_ns=3, states=["tracking", "occluded"])
    data, errors = image_annotations(msg)
    assert not errors
    assert sorted(t.text for t in ImageAnnotations.FromString(data).texts) == ["1 +2.00 tracking", "7 -1.00 occluded"]

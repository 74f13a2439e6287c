"""Recordings open in Foxglove: a real recorder process writes Foxglove channels beside rtseg's,
a kill -9 and the next recorder's recovery keep them, and the standard `mcap` reader decodes
every message of every segment with its channel's schema."""
from __future__ import annotations

import json
import signal
import time

import cv2
import msgpack
import numpy as np
from foxglove_schemas_protobuf.CompressedImage_pb2 import CompressedImage
from foxglove_schemas_protobuf.ImageAnnotations_pb2 import ImageAnnotations
from mcap.reader import make_reader

from rtseg.protocol import MasksMessage, unpack
from rtseg.recording import list_segments
from tests.helpers.foxglove_checks import assert_polygons_on_masks
from tests.helpers.foxglove_client import message_class
from tests.helpers.procs import start_cli, stop_process, wait_for
from tests.helpers.recording import PublishingThread, write_recording

H, W = 96, 128


def decode_segment(path) -> dict[str, list]:
    """Every message of a closed segment, decoded with its schema: topic -> decoded messages."""
    out: dict[str, list] = {}
    with open(path, "rb") as f:
        reader = make_reader(f)
        assert reader.get_summary() is not None, f"{path.name} is not a finished, indexed MCAP file"
        for schema, channel, message in reader.iter_messages():
            if channel.message_encoding == "rtseg-wire":
                value = unpack([channel.topic.encode(), *msgpack.unpackb(message.data)])
            elif channel.message_encoding == "json":
                assert schema.encoding == "jsonschema" and json.loads(schema.data)["type"] == "object"
                value = json.loads(message.data)
            else:
                assert (channel.message_encoding, schema.encoding) == ("protobuf", "protobuf"), channel
                value = message_class(schema.name, __import__("base64").b64encode(schema.data)).FromString(message.data)
                known = {"foxglove.ImageAnnotations": ImageAnnotations, "foxglove.CompressedImage": CompressedImage}
                assert value.SerializeToString() == known[schema.name].FromString(message.data).SerializeToString()
            out.setdefault(channel.topic, []).append((message.log_time, value))
    return out


def test_recording_opens_in_foxglove_after_a_kill_and_recovery(tmp_path):
    pub = PublishingThread(rate_hz=30, frames=True, h=H, w=W)
    pub.start()
    assert pub.ready.wait(10)
    rec = tmp_path / "rec"
    args = ("record", "--pub", pub.endpoint, "--dir", str(rec), "--segment-seconds", "1", "--frames")
    try:
        proc = start_cli(*args, log=tmp_path / "first.log")
        wait_for(lambda: rec.is_dir() and any(p.suffix == ".mcap" for p in list_segments(rec)), 30, "a closed segment")
        time.sleep(0.5)  # some records into the next, open segment
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL
        assert any(p.name.endswith(".part") for p in list_segments(rec))
        proc = start_cli(*args, log=tmp_path / "second.log")  # recovers the .part, records a little more
        wait_for(lambda: "recovered" in (tmp_path / "second.log").read_text(), 30, "recovery")
        time.sleep(1.0)
        assert stop_process(proc) == 0
    finally:
        pub.stop()
    segments = list_segments(rec)
    assert len(segments) >= 3 and all(p.suffix == ".mcap" for p in segments)
    checked = matched = statuses = 0
    for path in segments:
        topics = decode_segment(path)
        for wire, foxglove in (("masks.cam", "/cam/masks"), ("frame.cam", "/cam/image"), ("status", "/rtseg/status")):
            assert (wire in topics) == (foxglove in topics), (path.name, topics.keys())
        wire_masks = [m for _, m in topics.get("masks.cam", []) if isinstance(m, MasksMessage)]
        # each masks record has its Foxglove twin (a kill between the two writes may cost the last one)
        assert len(wire_masks) - 1 <= len(topics.get("/cam/masks", [])) <= len(wire_masks)
        stamps = {}
        for _, ann in topics.get("/cam/masks", []):
            index = assert_polygons_on_masks(ann, H, W)
            stamps[(ann.timestamp.seconds, ann.timestamp.nanos)] = index
            checked += 1
        for _, img in topics.get("/cam/image", []):
            rgb = cv2.imdecode(np.frombuffer(img.data, np.uint8), cv2.IMREAD_COLOR)
            assert img.format == "jpeg" and rgb.shape == (H, W, 3)
            matched += (img.timestamp.seconds, img.timestamp.nanos) in stamps
        assert all(s["device"] == "cpu" for _, s in topics.get("/rtseg/status", []))
        statuses += len(topics.get("/rtseg/status", []))
    assert checked >= 30 and matched >= 30 and statuses >= 3


def test_export_to_foxglove_turns_a_plain_recording_into_one_foxglove_file(tmp_path):
    """A recording without Foxglove channels (recorder.foxglove off, or an older rtseg), the
    last segment a crash-left .part: `rtseg export --to foxglove` makes one indexed MCAP file."""
    rec = tmp_path / "rec"
    write_recording(rec, 20, with_frames=True, segments=2, leave_part=True)
    out = tmp_path / "out.mcap"
    proc = start_cli("export", str(rec), "--to", "foxglove", "--out", str(out), "--no-progress",
                     log=tmp_path / "export.log")
    assert proc.wait(60) == 0, (tmp_path / "export.log").read_text()
    topics = decode_segment(out)
    assert {t: len(v) for t, v in topics.items()} == {"/cam/masks": 20, "/cam/image": 20, "/cam/events": 1}
    indices = [assert_polygons_on_masks(ann, 48, 64) for _, ann in topics["/cam/masks"]]
    assert indices == list(range(20))
    stamps = [(a.timestamp.seconds, a.timestamp.nanos) for _, a in topics["/cam/masks"]]
    assert [(i.timestamp.seconds, i.timestamp.nanos) for _, i in topics["/cam/image"]] == stamps
    assert topics["/cam/events"][0][1]["op"] == "add_points"
    assert "20 on /cam/masks" in (tmp_path / "export.log").read_text()

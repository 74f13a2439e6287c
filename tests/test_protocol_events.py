"""The event topic and per-object states: round trips, and old messages still decode."""
from __future__ import annotations

import msgpack
import numpy as np
import pytest

from rtseg.protocol import MasksMessage, ObjectEvent, ProtocolError, pack, unpack


def masks_with_states(states):
    masks = np.zeros((2, 12, 16), bool)
    masks[0, 2:5, 3:9] = True
    return MasksMessage.from_arrays("cam", 4, obj_ids=[1, 2], masks=masks, scores=[3.0, -2.0],
                                    boxes=np.array([[3, 2, 9, 5], [0, 0, 0, 0]], np.float32), capture_ns=1,
                                    capture_wall_ns=2, processed_ns=3, states=states)


def test_object_states_round_trip():
    msg = masks_with_states(["tracking", "occluded"])
    body = msgpack.unpackb(pack(msg)[1])
    assert [o["state"] for o in body["objects"]] == ["tracking", "occluded"]
    assert [o.state for o in unpack(pack(msg)).objects] == ["tracking", "occluded"]


def test_masks_without_states_are_what_old_segmenters_send_and_still_decode():
    msg = masks_with_states(None)
    body = msgpack.unpackb(pack(msg)[1])
    assert all("state" not in o for o in body["objects"])  # byte-for-byte the old object map
    assert [o.state for o in unpack(pack(msg)).objects] == [None, None]


def test_event_round_trip_and_topic():
    ev = ObjectEvent("cam", "entered_zone", 3, 120, 10**9, 1_700_000_000 * 10**9, "tracking", (1.0, 2.0, 3.0, 4.0),
                     5.5, None, None, "door")
    parts = pack(ev)
    assert parts[0] == b"event.cam"
    body = msgpack.unpackb(parts[1])
    assert body["v"] == 1 and body["type"] == "event" and body["zone"] == "door" and body["obj_id"] == 3
    assert unpack(parts) == ev
    lost = ObjectEvent("cam", "lost", 3, 130, 2, 3, "lost", (1.0, 2.0, 3.0, 4.0), -4.0, "occluded", 5.25)
    assert unpack(pack(lost)) == lost
    assert ev.to_json()["camera"] == "cam" and ev.to_json()["box"] == [1.0, 2.0, 3.0, 4.0]


def test_malformed_event_is_refused_naming_the_field():
    parts = pack(ObjectEvent("cam", "lost", 3, 130, 2, 3, "lost", (1.0, 2.0, 3.0, 4.0), -4.0))
    body = msgpack.unpackb(parts[1])
    body["box"] = [1, 2]
    with pytest.raises(ProtocolError, match="event box"):
        unpack([parts[0], msgpack.packb(body)])
    body["box"], body["obj_id"] = [1, 2, 3, 4], "three"
    with pytest.raises(ProtocolError, match="obj_id"):
        unpack([parts[0], msgpack.packb(body)])

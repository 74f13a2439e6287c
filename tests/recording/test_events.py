"""Object events: the recorder records the event topic, `rtseg export --to coco` writes them
to EVENTS.events.json beside the COCO file, tied to the COCO image of the same frame."""
from __future__ import annotations

import json
import time

from rtseg.cli import main as cli
from rtseg.pipeline.publisher import Publisher
from rtseg.protocol import ObjectEvent
from rtseg.recording.store import read_records
from tests.helpers.procs import start_cli, stop_process, wait_for
from tests.helpers.recording import masks_message


def event(kind: str, frame_index: int, zone: str | None = None) -> ObjectEvent:
    state = {"appeared": "tracking", "occluded": "occluded", "entered_zone": "tracking"}[kind]
    return ObjectEvent("cam", kind, 1, frame_index, time.monotonic_ns(), time.time_ns(), state,
                       (5.0, 6.0, 17.0, 20.0), 3.5, None, None, zone)


def test_recorded_events_are_exported_beside_coco(tmp_path, capsys):
    rec_dir = tmp_path / "rec"
    with Publisher("tcp://127.0.0.1:*", hwm=10_000) as pub:
        proc = start_cli("record", "--pub", pub.endpoint, "--dir", str(rec_dir), "--segment-seconds", "60",
                         log=tmp_path / "recorder.log")
        try:
            def recorded_events() -> int:  # publish until the (slow-joining) recorder has them
                pub.publish(masks_message(0))
                pub.publish(event("appeared", 0))
                time.sleep(0.05)
                parts = list(rec_dir.glob("*.mcap.part"))
                return parts and sum(r.kind == "event" for r in read_records(rec_dir))

            wait_for(recorded_events, 30, "the recorder to record an event", interval=0.2)
            for i in (1, 2):
                pub.publish(masks_message(i))
            pub.publish(event("entered_zone", 2, "door"))
            pub.publish(event("occluded", 7))  # a frame without a masks record
            wait_for(lambda: any(r.kind == "event" and r.message().event == "occluded" for r in read_records(rec_dir)),
                     10, "the last event")
        finally:
            stop_process(proc)
    out = tmp_path / "x.coco.json"
    assert cli(["export", str(rec_dir), "--to", "coco", "--out", str(out)]) == 0
    assert "x.events.json" in capsys.readouterr().out
    coco = json.loads(out.read_text())
    events = json.loads((tmp_path / "x.events.json").read_text())["events"]
    kinds = [e["event"] for e in events]
    assert kinds[-2:] == ["entered_zone", "occluded"] and set(kinds[:-2]) == {"appeared"}
    image_of = {(i["camera"], i["frame_index"]): i["id"] for i in coco["images"]}
    zone = events[-2]
    assert zone["zone"] == "door" and zone["obj_id"] == 1 and zone["box"] == [5.0, 6.0, 17.0, 20.0]
    assert zone["image_id"] == image_of[("cam", 2)] and zone["camera"] == "cam" and zone["capture_wall_ns"] > 0
    assert events[-1]["image_id"] is None

"""Lifecycle states, events, zones and clean masks through a real `rtseg run` (CPU, random
weights with the object-score head forced to 'visible': masks are meaningless, the path is real)."""
from __future__ import annotations

import pytest

from rtseg.client import Controller, Masks, Subscriber
from rtseg.protocol import ObjectEvent
from tests.helpers.engine import write_test_checkpoint
from tests.helpers.pipeline import Collector, Pipeline, write_config


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_test_checkpoint(tmp_path_factory.mktemp("ckpt") / "test128.pt", 128)


def events_of(got) -> list[tuple[str, int, str | None]]:
    return [(g.event, g.obj_id, g.zone) for g in got if isinstance(g, ObjectEvent)]


def test_states_events_and_zones_through_the_pipeline(tmp_path, checkpoint):
    camera = {"id": "cam", "source": "synthetic://160x120@8?objects=2&seed=1", "ring_slots": 32,
              "zones": [{"name": "everywhere", "polygon": [[0, 0], [160, 0], [160, 120], [0, 120]],
                         "min_overlap": 0.5, "frames": 2}],
              "clean_masks": {"remove_islands_px": 30, "fill_holes_px": 30}}
    config = write_config(tmp_path, checkpoint, policy="latest", cameras=[camera])
    with Pipeline(config) as pipe, Subscriber(pipe.pub, topics=("masks", "event")) as sub:
        pipe.wait_ready()
        with Controller(pipe.control, timeout=20) as ctl:
            assert ctl.list()["cameras"]["cam"]["zones"] == [  # for viewers without the config
                {"name": "everywhere", "polygon": [[0, 0], [160, 0], [160, 120], [0, 120]], "min_overlap": 0.5}]
            assert ctl.add_box("cam", 1, [20, 20, 100, 90])["ok"]
        seen = Collector(sub, pipe)
        seen.wait(lambda m: isinstance(m, ObjectEvent) and (m.event, m.zone) == ("entered_zone", "everywhere"), 60)
        got = list(seen.got)
        assert events_of(got)[0] == ("appeared", 1, None)
        masks = [g for g in got if isinstance(g, Masks) and 1 in g.obj_ids]
        assert masks and all(m.states == ("tracking",) for m in masks)  # the forced score: always visible
        for m in masks:  # the published box and area follow the (cleaned) mask
            assert m.areas[0] == m.masks[0].sum()
        entered = next(g for g in got if isinstance(g, ObjectEvent) and g.event == "entered_zone")
        assert entered.state == "tracking" and entered.frame_index >= masks[0].frame_index + 1
        assert entered.capture_wall_ns > 0 and entered.box[2] > entered.box[0]
        with Controller(pipe.control, timeout=20) as ctl:
            ctl.remove("cam", 1)
        seen.got.clear()
        seen.wait(lambda m: isinstance(m, ObjectEvent) and m.event == "removed", 20)
        got = seen.got
        assert events_of(got)[-2:] == [("left_zone", 1, "everywhere"), ("removed", 1, None)]

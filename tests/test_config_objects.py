"""Config of lifecycle, zones, clean masks and auto prompts: defaults off, bad values named."""
from __future__ import annotations

import pytest

from rtseg.config import ConfigError, parse_config

CAM = """\
cameras:
  - id: cam
    source: "synthetic://160x120@5"
"""


def test_defaults_are_off():
    cam = parse_config(CAM).cameras[0]
    assert cam.zones == [] and not cam.clean_masks.enabled and cam.auto_prompt.mode == "off"
    assert cam.lifecycle.remove_after_s is None


def test_a_full_section_parses():
    cam = parse_config(CAM + """\
    lifecycle: {occluded_after_frames: 4, lost_after_s: 2.5, remove_after_s: 60}
    zones:
      - {name: door, polygon: [[0, 0], [80, 0], [80, 120], [0, 120]], min_overlap: 0.3}
    clean_masks: {remove_islands_px: 20, fill_holes_px: 30, open_px: 3, close_px: 5}
    auto_prompt: {mode: everything, max_objects: 4, interval_s: 5}
""").cameras[0]
    assert cam.zones[0].name == "door" and cam.clean_masks.enabled and cam.auto_prompt.max_objects == 4


@pytest.mark.parametrize("extra, expected", [
    ("    zones:\n      - {name: bow, polygon: [[0, 0], [50, 50], [50, 0], [0, 50]]}\n",
     "line 5: cameras.0.zones.0.polygon: polygon is self-intersecting: edge 0 ([0.0, 0.0] -> [50.0, 50.0]) "
     "crosses edge 2"),
    ("    zones:\n      - {name: big, polygon: [[0, 0], [200, 0], [200, 50]]}\n",
     "cameras.0: zones.0 ('big'): point [200.0, 0.0] lies outside the 160x120 frame"),
    ("    zones:\n      - {name: neg, polygon: [[0, 0], [-5, 10], [30, 30]]}\n",
     "line 5: cameras.0.zones.0.polygon: polygon point [-5.0, 10.0] has a negative coordinate"),
    ("    zones:\n      - {name: flat, polygon: [[0, 0], [10, 10], [20, 20]]}\n", "polygon has no area"),
    ("    zones:\n      - {name: two, polygon: [[0, 0], [10, 10]]}\n", "cameras.0.zones.0.polygon: List should have "
     "at least 3 items"),
    ("    zones:\n      - {name: a, polygon: [[0, 0], [9, 0], [9, 9]]}\n      - {name: a, polygon: [[0, 0], [9, 0], "
     "[9, 9]]}\n", "zone names must be unique per camera; repeated: ['a']"),
    ("    zones:\n      - {name: a, polygon: [[0, 0], [9, 0], [9, 9]], min_overlap: 0}\n",
     "cameras.0.zones.0.min_overlap: Input should be greater than 0"),
    ("    clean_masks: {remove_islands_px: -3}\n",
     "line 4: cameras.0.clean_masks.remove_islands_px: Input should be greater than or equal to 0 (got -3)"),
    ("    clean_masks: {open_px: -1}\n", "cameras.0.clean_masks.open_px: Input should be greater than or equal to 0"),
    ("    lifecycle: {lost_after_s: -1}\n", "cameras.0.lifecycle.lost_after_s: Input should be greater than 0"),
    ("    lifecycle: {occluded_after_frames: 0}\n", "cameras.0.lifecycle.occluded_after_frames"),
    ("    auto_prompt: {mode: all}\n", "cameras.0.auto_prompt.mode: Input should be 'off', 'boxes' or 'everything'"),
    ("    auto_prompt: {max_objects: -2}\n", "cameras.0.auto_prompt.max_objects"),
])
def test_bad_values_name_the_key(extra, expected):
    with pytest.raises(ConfigError) as err:
        parse_config(CAM + extra, "x.yaml")
    assert expected in str(err.value)


def test_zones_are_checked_against_an_explicit_camera_size():
    text = CAM.replace('synthetic://160x120@5"', 'rtsp://cam/stream"\n    width: 640\n    height: 480')
    parse_config(text + "    zones:\n      - {name: a, polygon: [[0, 0], [600, 0], [600, 400]]}\n")
    with pytest.raises(ConfigError, match="outside the 640x480 frame"):
        parse_config(text + "    zones:\n      - {name: a, polygon: [[0, 0], [700, 0], [600, 400]]}\n")

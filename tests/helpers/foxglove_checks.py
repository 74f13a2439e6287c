"""Checks that decoded Foxglove messages show what rtseg published (live and recorded)."""
from __future__ import annotations

import cv2
import numpy as np

from rtseg.view.overlay import object_color
from tests.helpers.recording import masks_for


def metadata(annotations) -> dict[str, str]:
    return {kv.key: kv.value for kv in annotations.metadata}


def assert_polygons_on_masks(annotations, h: int, w: int, min_iou: float = 0.8) -> int:
    """`annotations` (a decoded foxglove.ImageAnnotations of tests.helpers.recording's masks):
    every polygon vertex is a pixel of one object's mask, each object's filled polygons cover
    its mask (IoU >= min_iou), outline and label colours are the object's. Returns the frame index."""
    index = int(metadata(annotations)["frame_index"])
    masks = dict(zip([1, 7], masks_for(index, h=h, w=w), strict=True))
    colours = {object_color(i): i for i in masks}
    filled = {i: np.zeros((h, w), np.uint8) for i in masks}
    assert annotations.points, "no polygons"
    for poly in annotations.points:
        rgb = tuple(round(v * 255) for v in (poly.outline_color.r, poly.outline_color.g, poly.outline_color.b))
        obj = colours[rgb]  # KeyError: a colour that is no object's
        assert poly.fill_color.a < 1 and poly.outline_color.a == 1
        pts = np.array([[p.x, p.y] for p in poly.points])
        xs, ys = np.floor(pts[:, 0]).astype(int), np.floor(pts[:, 1]).astype(int)
        assert masks[obj][ys, xs].all(), f"frame {index}: object {obj} has polygon vertices off its mask"
        cv2.fillPoly(filled[obj], [np.round(pts - 0.5).astype(np.int32)], 1)
    for obj, mask in masks.items():
        inter = np.logical_and(filled[obj], mask).sum()
        union = np.logical_or(filled[obj], mask).sum()
        assert inter / union >= min_iou, f"frame {index}: object {obj} polygons cover IoU {inter / union:.2f}"
    labels = {}
    for t in annotations.texts:
        obj = int(t.text.split()[0])
        labels[obj] = t.text
        bg = t.background_color
        assert tuple(round(v * 255) for v in (bg.r, bg.g, bg.b)) == object_color(obj)
    assert sorted(labels) == [1, 7], labels
    return index

"""Validating prompts before they touch the model: a rejected prompt changes nothing."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class PromptError(ValueError):
    """A prompt that cannot be applied; the message names the offending value."""


@dataclass(frozen=True)
class Prompt:
    """A checked prompt in source-pixel coordinates."""

    points: np.ndarray | None  # (P, 2) float32 x, y
    labels: np.ndarray | None  # (P,) int32, 1 positive / 0 negative
    box: np.ndarray | None  # (4,) float32 x0, y0, x1, y1
    mask: np.ndarray | None  # (H, W) bool


def _finite_array(value, name: str, shape_desc: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise PromptError(f"{name} must be numbers ({shape_desc}), got {value!r}") from None
    if not np.all(np.isfinite(arr)):
        raise PromptError(f"{name} must be finite numbers, got {value!r}")
    return arr


def _check_in_frame(xs: np.ndarray, ys: np.ndarray, name: str, value, width: int, height: int) -> None:
    if xs.min() < 0 or ys.min() < 0 or xs.max() > width or ys.max() > height:
        raise PromptError(
            f"{name} {value!r} lies outside the {width}x{height} frame (x in [0, {width}], y in [0, {height}])"
        )


def validate_prompt(*, points=None, labels=None, box=None, mask=None, width: int, height: int) -> Prompt:
    if mask is not None and (points is not None or box is not None):
        raise PromptError("give either a mask or points/box, not both")
    if points is None and box is None and mask is None:
        raise PromptError("a prompt needs points (with labels), a box, or a mask")
    if (points is None) != (labels is None):
        raise PromptError(f"points and labels go together: got points={points!r}, labels={labels!r}")

    pts = lab = bx = m = None
    if points is not None:
        arr = _finite_array(points, "points", "[[x, y], ...]")
        if arr.ndim == 1 and arr.shape == (2,):
            arr = arr[None]
        if arr.ndim != 2 or arr.shape[1] != 2 or arr.shape[0] == 0:
            raise PromptError(f"points must be a non-empty list of [x, y] pairs, got shape {arr.shape}: {points!r}")
        _check_in_frame(arr[:, 0], arr[:, 1], "point", points, width, height)
        raw_labels = np.atleast_1d(np.asarray(labels, dtype=object))
        if raw_labels.ndim != 1 or raw_labels.shape[0] != arr.shape[0]:
            raise PromptError(f"need one label per point: {arr.shape[0]} points, labels={labels!r}")
        if not all(isinstance(v, (int, np.integer, bool, np.bool_)) and int(v) in (0, 1) for v in raw_labels):
            raise PromptError(f"labels must be 1 (positive) or 0 (negative), got {labels!r}")
        pts = arr.astype(np.float32)
        lab = raw_labels.astype(np.int32)
    if box is not None:
        arr = _finite_array(box, "box", "[x0, y0, x1, y1]").reshape(-1)
        if arr.shape != (4,):
            raise PromptError(f"box must be [x0, y0, x1, y1], got {box!r}")
        x0, y0, x1, y1 = arr
        if x1 <= x0 or y1 <= y0:
            raise PromptError(f"box {box!r} is empty: need x1 > x0 and y1 > y0")
        _check_in_frame(arr[[0, 2]], arr[[1, 3]], "box", box, width, height)
        bx = arr.astype(np.float32)
    if mask is not None:
        m = np.asarray(mask)
        if m.shape != (height, width):
            raise PromptError(f"mask shape {m.shape} does not match the frame: expected ({height}, {width})")
        if m.dtype != np.bool_:
            if not np.issubdtype(m.dtype, np.integer) or not np.isin(m, (0, 1)).all():
                raise PromptError(f"mask must be boolean (or 0/1 integers), got dtype {m.dtype}")
            m = m.astype(bool)
        if not m.any():
            raise PromptError("mask is empty: mark at least one pixel of the object")
    return Prompt(pts, lab, bx, m)


def check_obj_id(obj_id) -> int:
    if isinstance(obj_id, bool) or not isinstance(obj_id, (int, np.integer)):
        raise PromptError(f"obj_id must be an integer, got {obj_id!r}")
    if not 0 <= int(obj_id) < 2**31:
        raise PromptError(f"obj_id must be in [0, 2**31), got {obj_id}")
    return int(obj_id)


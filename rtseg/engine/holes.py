"""Hole filling of SAM 2's low-resolution mask logits, on any device.

sam2's video predictor fills small holes after every frame
(`sam2.utils.misc.fill_holes_in_mask_scores`, `fill_hole_area=8`): every 8-connected
component of background pixels (logit <= 0) with area <= fill_hole_area gets logit 0.1.
sam2 needs its CUDA extension for that and silently skips it without one (every CPU, and
every install built with SAM2_BUILD_CUDA=0), so masks then differ from a standard install's.

Here the same definition runs in plain torch: min-label propagation over background pixels
for area-1 steps (a component of <= area pixels has a diameter <= area-1, so it is fully
labelled by then), then a component is a hole when its label group is closed (no background
neighbour carries another label) and has at most `area` pixels. A group that is not closed
belongs to a larger component, so the test is exact, with static shapes and no host sync.
sam2's extension is used instead where it loads (CUDA tensors), so results equal sam2's own.

Where it acts matters, because a filled mask feeds later frames (sam2/sam2_video_predictor.py,
`_run_single_frame_inference`): the stored `pred_masks` of every frame are the filled ones,
but a tracked frame's memory is encoded inside `track_step`, from the unfilled mask, before
the filling; a prompted frame's memory is encoded later from the stored, filled mask
(`propagate_in_video_preflight`); a correction click feeds the stored, filled low-res mask
back to the decoder (`prev_sam_mask_logits`). StreamingPredictor fills right after each
`track_step` and stores only the filled mask, so it does the same in all three places.
"""
from __future__ import annotations

import contextlib
import functools
import logging

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

FILL_SCORE = 0.1  # sam2's logit for a filled hole


@functools.cache
def sam2_extension():
    """sam2's compiled extension if it really loads (import, not just a file on disk), else None."""
    try:
        from sam2 import _C
    except (ImportError, OSError) as e:
        log.debug("sam2's CUDA extension does not load (%s): hole filling runs in torch", e)
        return None
    return _C


def backend(device: torch.device) -> str:
    """Which implementation fills holes on `device`: 'sam2-extension' or 'torch'."""
    return "sam2-extension" if device.type == "cuda" and sam2_extension() is not None else "torch"


def fill_holes_in_mask_scores(mask: torch.Tensor, max_area: int) -> torch.Tensor:
    """sam2.utils.misc.fill_holes_in_mask_scores, on any device: (N, 1, H, W) logits in, filled logits out."""
    if max_area <= 0:
        raise ValueError(f"max_area must be positive, got {max_area}")
    if backend(mask.device) == "sam2-extension":
        labels, areas = sam2_extension().get_connected_componnets((mask <= 0).to(torch.uint8).contiguous())
        is_hole = (labels > 0) & (areas <= max_area)
    else:
        is_hole = small_components(mask <= 0, max_area)
    return torch.where(is_hole, FILL_SCORE, mask)


def small_components(fg: torch.Tensor, max_area: int) -> torch.Tensor:
    """True where a pixel of `fg` (..., H, W bool) is in an 8-connected component of <= max_area pixels."""
    h, w = fg.shape[-2:]
    if h * w >= 1 << 24:
        raise ValueError(f"mask of {h}x{w} pixels is too large for exact float32 labels")
    with torch.autocast(fg.device.type, enabled=False):  # labels must stay exact float32 integers
        return _small_components(fg.reshape(-1, 1, h, w), max_area).view(fg.shape)


def _small_components(x: torch.Tensor, max_area: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    none = float(h * w)  # the label of non-component pixels, one past the last pixel index
    index = torch.arange(h * w, device=x.device, dtype=torch.float32).view(1, 1, h, w)
    labels = torch.where(x, index, none)
    for _ in range(max_area - 1):
        labels = torch.where(x, _min3x3(labels), none)
    lowest = _min3x3(labels)
    highest = F.max_pool2d(torch.where(x, labels, -1.0), 3, stride=1, padding=1)
    open_edge = x & ((lowest != labels) | (highest != labels))
    flat = labels.view(x.shape[0], h * w).long()
    bins = torch.zeros(x.shape[0], h * w + 1, device=x.device, dtype=torch.float32)
    area = bins.scatter_add(1, flat, torch.ones_like(labels).view_as(flat)).gather(1, flat)
    opened = bins.scatter_add(1, flat, open_edge.float().view_as(flat)).gather(1, flat)
    return x.view_as(flat) & (area <= max_area) & (opened == 0)


def _min3x3(labels: torch.Tensor) -> torch.Tensor:
    return -F.max_pool2d(-labels, 3, stride=1, padding=1)


@contextlib.contextmanager
def official_predictor_fills_everywhere():
    """Make sam2's SAM2VideoPredictor fill holes with this module's function while inside.

    Without its extension sam2 skips filling (warning every frame), so rtseg's masks and the
    official ones would differ by design; the exactness test and the bench compare the two
    with the same filling on both sides. Where the extension loads this changes nothing:
    the function then calls the extension, as sam2 does.
    """
    import sam2.sam2_video_predictor as official

    saved = official.fill_holes_in_mask_scores
    official.fill_holes_in_mask_scores = fill_holes_in_mask_scores
    try:
        yield
    finally:
        official.fill_holes_in_mask_scores = saved

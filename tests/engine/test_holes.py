"""Hole filling equals sam2's definition on every device, without sam2's CUDA extension.

Definition (sam2.utils.misc.fill_holes_in_mask_scores, fill_hole_area=8): every 8-connected
component of background pixels (logit <= 0) with area <= max_area gets logit 0.1; nothing
else changes. `reference_fill` below is that definition written out as a breadth-first
search, independent of the torch implementation under test.
"""
from __future__ import annotations

from collections import deque

import numpy as np
import pytest
import torch

from rtseg.engine import holes

NEIGHBOURS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]


def reference_fill(mask: np.ndarray, max_area: int) -> np.ndarray:
    """(N, 1, H, W) logits -> filled logits, by the definition (BFS over 8-neighbours)."""
    out = mask.copy()
    for img, dst in zip(mask[:, 0], out[:, 0]):
        bg = (img <= 0).tolist()
        h, w = len(bg), len(bg[0])
        seen = [[False] * w for _ in range(h)]
        for y0 in range(h):
            for x0 in range(w):
                if not bg[y0][x0] or seen[y0][x0]:
                    continue
                component, queue = [], deque([(y0, x0)])
                seen[y0][x0] = True
                while queue:
                    y, x = queue.popleft()
                    component.append((y, x))
                    for dy, dx in NEIGHBOURS:
                        ny, nx = y + dy, x + dx
                        if 0 <= ny < h and 0 <= nx < w and bg[ny][nx] and not seen[ny][nx]:
                            seen[ny][nx] = True
                            queue.append((ny, nx))
                if len(component) <= max_area:
                    for y, x in component:
                        dst[y, x] = 0.1
    return out


def logits(rows: list[str]) -> np.ndarray:
    """'#' foreground (+2.0), '.' background (-2.0) -> (1, 1, H, W) float32."""
    return np.array([[2.0 if c == "#" else -2.0 for c in r] for r in rows], np.float32)[None, None]


def filled(rows: list[str], max_area: int = 8) -> list[str]:
    out = holes.fill_holes_in_mask_scores(torch.from_numpy(logits(rows)), max_area).numpy()[0, 0]
    return ["".join("#" if v == 2.0 else "+" if v == np.float32(0.1) else "." for v in r) for r in out]


def block_hole(area: int) -> list[str]:
    """A 12x12 foreground square with one hole of `area` pixels in a row (4-connected)."""
    rows = [["#"] * 12 for _ in range(12)]
    for i in range(area):
        rows[2 + i // 8][2 + i % 8] = "."
    return ["".join(r) for r in rows]


@pytest.mark.parametrize("area, is_filled", [(7, True), (8, True), (9, False)])
def test_holes_of_7_and_8_pixels_are_filled_9_is_not(area, is_filled):
    out = filled(block_hole(area))
    assert sum(r.count("+") for r in out) == (area if is_filled else 0)
    assert sum(r.count(".") for r in out) == (0 if is_filled else area)


def staircase(steps: int) -> list[str]:
    """A diagonal line of `steps` background pixels, each touching the next only at a corner."""
    width = steps + 2
    return ["#" * width] + ["#" * k + "." + "#" * (width - k - 1) for k in range(1, steps + 1)] + ["#" * width]


def test_diagonal_neighbours_join_one_component():
    # 9 pixels touching only diagonally are one 8-connected component of 9: not a hole
    # (under 4-connectivity they would be nine holes of 1 and all be filled)
    out = filled(staircase(9))
    assert sum(r.count(".") for r in out) == 9 and sum(r.count("+") for r in out) == 0
    # a staircase of 8 is one component of 8: filled
    out = filled(staircase(8))
    assert sum(r.count("+") for r in out) == 8 and sum(r.count(".") for r in out) == 0


def test_background_touching_the_border_counts_like_any_other():
    # sam2's labelling knows no "outside": a small background region at the border is a hole too
    rows = ["..######", "..######", "########", "######.."]
    assert filled(rows, max_area=3) == ["..######", "..######", "########", "######++"]
    assert filled(rows, max_area=4) == ["++######", "++######", "########", "######++"]
    # a single pixel in each corner, one of them touching a longer border run
    rows = [".######.", "########", "########", ".####..."]
    assert filled(rows, max_area=1) == ["+######+", "########", "########", "+####..."]


def test_nested_rings():
    rows = [
        "###########",
        "#.........#",
        "#.#######.#",
        "#.#.....#.#",
        "#.#.###.#.#",
        "#.#.#.#.#.#",
        "#.#.###.#.#",
        "#.#.....#.#",
        "#.#######.#",
        "#.........#",
        "###########",
    ]
    out = filled(rows)
    assert out[5][5] == "+"  # the 1-pixel hole at the centre
    assert out[3][3] == "." and out[1][1] == "."  # the rings of 16 and 32 stay
    np.testing.assert_array_equal(
        holes.fill_holes_in_mask_scores(torch.from_numpy(logits(rows)), 8).numpy(), reference_fill(logits(rows), 8))


def test_only_hole_pixels_change_and_the_dtype_stays():
    m = torch.from_numpy(logits(block_hole(5))).to(torch.bfloat16)
    out = holes.fill_holes_in_mask_scores(m, 8)
    assert out.dtype == torch.bfloat16 and out.shape == m.shape
    changed = out != m
    assert int(changed.sum()) == 5 and bool((out[changed] == torch.tensor(0.1, dtype=torch.bfloat16)).all())


def test_a_mask_without_background_or_without_foreground():
    assert filled(["###", "###"]) == ["###", "###"]
    assert filled(["...", "..."]) == ["+++", "+++"]  # 6 px of background: one small component
    assert filled(["...", "..."], max_area=5) == ["...", "..."]


def test_cpu_fills_in_torch_without_sam2s_extension():
    assert holes.backend(torch.device("cpu")) == "torch"
    with pytest.raises(ValueError, match="max_area must be positive"):
        holes.fill_holes_in_mask_scores(torch.zeros(1, 1, 4, 4), 0)


def test_random_masks_equal_the_definition():
    rng = np.random.default_rng(0)
    for _ in range(25):
        h, w = rng.integers(1, 24, size=2)
        m = np.where(rng.random((3, 1, h, w)) < rng.random(), 1.5, -0.5).astype(np.float32)
        m[rng.random(m.shape) < 0.05] = 0.0  # logit exactly 0 is background
        for area in (1, 8, 9):
            got = holes.fill_holes_in_mask_scores(torch.from_numpy(m), area).numpy()
            np.testing.assert_array_equal(got, reference_fill(m, area))


def random_logits(seed: int, n: int = 4, size: int = 64) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.where(rng.random((n, 1, size, size)) < 0.7, 1.5, -0.5).astype(np.float32)


@pytest.mark.cuda
def test_on_cuda_the_torch_filling_equals_the_definition():
    for seed in range(5):
        m = random_logits(seed)
        got = holes.small_components(torch.from_numpy(m).cuda() <= 0, 8)
        filled_cuda = torch.where(got, holes.FILL_SCORE, torch.from_numpy(m).cuda()).cpu().numpy()
        np.testing.assert_array_equal(filled_cuda, reference_fill(m, 8))


@pytest.mark.cuda(sam2_extension=True)
def test_on_cuda_sam2s_extension_and_the_torch_filling_agree():
    from sam2.utils.misc import fill_holes_in_mask_scores as sam2_fill

    assert holes.backend(torch.device("cuda")) == "sam2-extension"
    for seed in range(5):
        m = torch.from_numpy(random_logits(seed, size=256)).cuda()
        ours = torch.where(holes.small_components(m <= 0, 8), holes.FILL_SCORE, m)
        torch.testing.assert_close(sam2_fill(m, 8), ours, rtol=0, atol=0)
        torch.testing.assert_close(holes.fill_holes_in_mask_scores(m, 8), ours, rtol=0, atol=0)

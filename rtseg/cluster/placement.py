"""Which cameras share a segmenter, and which node runs it (pure functions; no Ray).

A segmenter is one GPU (Ray resource `GPU`) or, on a node without GPUs, one unit of the
custom resource `rtseg_segmenter` (CPU clusters, tests). It carries up to
`cluster.cameras_per_segmenter` in camera weights (1 per camera unless `cluster.weights`
says otherwise): what one GPU sustains at the cameras' frame rate, from `rtseg bench`.

Cameras waiting for a place are packed first-fit decreasing into as few segmenters as
their weights need (spare GPUs stay free for the next failover), and each new segmenter
goes to the node with the most free slots (so a site's cameras spread over hosts). A running
segmenter is never changed: its camera set is fixed while it runs. What does not fit stays
unplaced until a node joins or slots free up.
"""
from __future__ import annotations

from dataclasses import dataclass

SEGMENTER_RESOURCE = "rtseg_segmenter"


def segmenter_resource(resources: dict[str, float]) -> tuple[str, int]:
    """The resource a segmenter takes on a node with these Ray resources, and how many fit:
    ("GPU", n) on a GPU node, else ("rtseg_segmenter", n) (n may be 0)."""
    gpus = int(resources.get("GPU", 0))
    if gpus > 0:
        return "GPU", gpus
    return SEGMENTER_RESOURCE, int(resources.get(SEGMENTER_RESOURCE, 0))


@dataclass(frozen=True)
class NewSegmenter:
    node: str
    cameras: tuple[str, ...]


def pack(cameras: list[str], weights: dict[str, float], capacity: float,
         free_slots: dict[str, int]) -> tuple[list[NewSegmenter], list[str]]:
    """New segmenters for `cameras` on nodes with `free_slots` (node -> segmenters that still
    fit there). Returns them and the cameras left unplaced (no slot, or heavier than a
    segmenter carries), both in a deterministic order."""
    order = sorted(cameras, key=lambda c: (-weights.get(c, 1.0), c))
    slots = sum(max(0, n) for n in free_slots.values())
    bins: list[list[str]] = []
    loads: list[float] = []
    unplaced: list[str] = []
    for cam in order:
        w = weights.get(cam, 1.0)
        k = next((i for i, load in enumerate(loads) if load + w <= capacity + 1e-9), None)
        if k is None and w <= capacity + 1e-9 and len(bins) < slots:
            bins.append([])
            loads.append(0.0)
            k = len(bins) - 1
        if k is None:
            unplaced.append(cam)
            continue
        bins[k].append(cam)
        loads[k] += w
    free = {node: n for node, n in free_slots.items() if n > 0}
    placed = []
    for cams in bins:
        node = max(sorted(free), key=lambda n: free[n])  # most free slots; ties: lowest node id
        free[node] -= 1
        if free[node] == 0:
            del free[node]
        placed.append(NewSegmenter(node, tuple(sorted(cams))))
    return placed, sorted(unplaced)

"""Fixtures shared by several test modules."""
from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import zmq

from rtseg.ring import ring_segments, unlink_ring


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`cuda`-marked tests run where CUDA is: the suite's one conditional skip (see README, Tests).

    `@pytest.mark.cuda(gpus=2)` needs two GPUs; `sam2_extension=True` needs sam2's compiled
    extension (tools/gpu_check.sh builds it on the GPU machine).
    """
    marked = [(item, item.get_closest_marker("cuda")) for item in items]
    marked = [(item, marker) for item, marker in marked if marker is not None]
    if not marked:
        return
    import torch  # only when cuda tests were collected: most runs need no torch here

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    for item, marker in marked:
        need = marker.kwargs.get("gpus", 1)
        if gpus < need:
            item.add_marker(pytest.mark.skip(reason=f"needs {need} CUDA GPU(s), this host has {gpus}"))
        elif marker.kwargs.get("sam2_extension"):
            from rtseg.engine import holes

            if holes.sam2_extension() is None:
                item.add_marker(pytest.mark.skip(reason="needs sam2's CUDA extension (SAM2_BUILD_CUDA=1)"))


@pytest.fixture
def ctx() -> Iterator[zmq.Context]:
    """A private ZeroMQ context, destroyed (linger 0) after the test."""
    context = zmq.Context()
    yield context
    context.destroy(linger=0)


@pytest.fixture
def ring() -> Iterator[str]:
    """A shared-memory ring name of this test only; the test fails if any of its segments is left over."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    yield name
    left = ring_segments(name)
    unlink_ring(name)
    assert left == [], f"leaked shared memory: {left}"

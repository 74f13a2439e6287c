"""Fixtures shared by several test modules."""
from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
import zmq


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`cuda`-marked tests run where CUDA is: the suite's one conditional skip (see README, Tests).

    `@pytest.mark.cuda(gpus=2)` needs two GPUs; `sam2_extension=True` needs sam2's compiled
    extension (tools/gpu_check.sh builds it on the GPU machine).
    """
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    for item in items:
        marker = item.get_closest_marker("cuda")
        if marker is None:
            continue
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

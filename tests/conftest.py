"""Fixtures shared by several test modules."""
from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import zmq

from rtseg.ring import ring_segments, unlink_ring


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

"""Fixtures of the bridge tests."""
from __future__ import annotations

import pytest

from tests.helpers.recording import PublishingThread

H, W = 96, 128  # the size the bridge tests publish at


@pytest.fixture
def publishing():
    """A real Publisher at 20 Hz: masks (objects 1 and 7), frames, status, prompt and object events."""
    pt = PublishingThread(rate_hz=20, frames=True, h=H, w=W, events=True)
    pt.start()
    assert pt.ready.wait(10) and pt.error is None
    yield pt
    pt.stop()

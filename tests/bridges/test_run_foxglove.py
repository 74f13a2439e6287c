"""End to end: `rtseg run` with a `foxglove:` section starts the bridge as its own child; a
Foxglove client sees ring frames and the segmenter's masks as polygons on the masks it published."""
from __future__ import annotations

import time

import numpy as np
import pytest
from foxglove_schemas_protobuf.CompressedImage_pb2 import CompressedImage

from rtseg.client import Controller, Subscriber
from tests.helpers.engine import write_test_checkpoint
from tests.helpers.foxglove_checks import metadata
from tests.helpers.foxglove_client import FoxgloveClient
from tests.helpers.net import free_port
from tests.helpers.pipeline import Pipeline, write_config


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_test_checkpoint(tmp_path_factory.mktemp("ckpt") / "test128.pt", 128)


def test_run_serves_foxglove_from_its_rings(tmp_path, checkpoint):
    port = free_port()
    config = write_config(tmp_path, checkpoint, policy="latest", extra={"foxglove": {"enabled": True, "port": port,
                                                                                    "fps": 5}})
    with Pipeline(config) as pipe, Subscriber(pipe.pub, topics=("masks",)) as sub:
        pipe.wait_ready()
        assert "foxglove" in pipe.pids()
        with Controller(pipe.control, timeout=20) as ctl:
            ctl.add_points("cam", 1, [[40, 40]], [1])
        published = {}
        deadline = time.monotonic() + 60
        with FoxgloveClient(f"ws://127.0.0.1:{port}") as client:
            annotations, images = [], []
            while time.monotonic() < deadline and (len(annotations) < 3 or len(images) < 3):
                got = client.collect({"/cam/masks": 1, "/cam/image": 1}, timeout=0.5)
                annotations += [client.decode("/cam/masks", p) for p in got["/cam/masks"]]
                images += [CompressedImage.FromString(p) for p in got["/cam/image"]]
                while (m := sub.recv(timeout=0)) is not None:
                    published[m.frame_index] = m
        while (m := sub.recv(timeout=1)) is not None and len(published) < 100:
            published[m.frame_index] = m
        pipe.stop()
    assert len(images) >= 3 and all(i.frame_id == "cam" and i.format == "jpeg" for i in images)
    with_object = [a for a in annotations if a.points]
    assert with_object, "no polygons after the click"
    for ann in with_object:
        wire = published[int(metadata(ann)["frame_index"])]
        mask = wire.mask_of(1)
        for poly in ann.points:
            pts = np.array([[p.x, p.y] for p in poly.points])
            assert mask[np.floor(pts[:, 1]).astype(int), np.floor(pts[:, 0]).astype(int)].all()
        assert [t.text.split()[0] for t in ann.texts] == ["1"]

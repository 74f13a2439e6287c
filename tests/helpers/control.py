"""Control-socket test parts: a real ControlServer answering from a background thread, a
handler that records what it is asked, and a client that sends exactly the bytes it is given."""
from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterator
from typing import Any

import msgpack
import numpy as np
import zmq

from rtseg.pipeline.control import (
    PROMPT_TYPES,
    REQUEST_TYPES,
    ControlServer,
    ValidatedRequest,
    check_frame_index,
    prompt_reply,
    status_reply,
)
from rtseg.protocol import PROTOCOL_VERSION, CameraStatus, StatusMessage, encode_rle


@contextlib.contextmanager
def serving(handler: Any, context: zmq.Context, **kwargs: Any) -> Iterator[ControlServer]:
    """A ControlServer on a free loopback port, answering from a background thread."""
    server = ControlServer("tcp://127.0.0.1:*", handler, context=context, **kwargs)
    stop = threading.Event()
    thread = threading.Thread(target=server.serve, args=(stop, 10), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        stop.set()
        thread.join(5)
        server.close()


H, W = 48, 64
LATEST, OLDEST_HELD = 100, 95


def check_valid(req: ValidatedRequest, handler: FakeHandler) -> None:
    """An independent statement of what `handle` may receive."""
    assert req.type in REQUEST_TYPES and req.type != "list"
    assert req.camera is None or req.camera in handler.sizes
    if req.type in PROMPT_TYPES | {"remove", "reset"}:
        assert isinstance(req.camera, str)
    if req.type in PROMPT_TYPES | {"remove"}:
        assert type(req.obj_id) is int and 0 <= req.obj_id < 2**31
    assert req.frame_index is None or (type(req.frame_index) is int and req.frame_index >= 0)
    if req.type == "remove":
        assert req.obj_id in handler.objects[req.camera]
    h, w = handler.sizes.get(req.camera, (0, 0))
    if req.type == "add_points":
        pts, labels = req.points, req.labels
        assert pts.dtype == np.float32 and pts.ndim == 2 and pts.shape[1] == 2 and 1 <= len(pts) <= 256
        assert np.isfinite(pts).all() and (pts >= 0).all() and (pts[:, 0] <= w).all() and (pts[:, 1] <= h).all()
        assert labels.shape == (len(pts),) and set(labels.tolist()) <= {0, 1}
        assert req.box is None and req.mask is None
    if req.type == "add_box":
        x0, y0, x1, y1 = req.box.tolist()
        assert all(math.isfinite(v) for v in (x0, y0, x1, y1))
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
        assert req.points is None and req.mask is None
    if req.type == "add_mask":
        assert req.mask.dtype == bool and req.mask.shape == (h, w) and req.mask.any()
        assert req.mask_rle == encode_rle(req.mask)
    if req.type == "add_boxes":
        b = req.boxes
        assert b.dtype == np.float32 and b.ndim == 2 and b.shape[1] == 4 and 1 <= len(b) <= 256
        assert np.isfinite(b).all() and (b[:, 0] >= 0).all() and (b[:, 1] >= 0).all()
        assert (b[:, 2] > b[:, 0]).all() and (b[:, 3] > b[:, 1]).all() and (b[:, 2] <= w).all() and (b[:, 3] <= h).all()
        assert type(req.only_new) is bool and req.obj_id is None and req.box is None


class FakeHandler:
    """Records what it is asked; keeps objects per camera; holds frames OLDEST_HELD..LATEST."""

    def __init__(self, sizes: dict[str, tuple[int, int] | None] | None = None):
        self.sizes = sizes if sizes is not None else {"cam": (H, W), "cam2": (20, 30)}
        self.objects: dict[str, set[int]] = {c: set() for c in self.sizes}
        self.calls: list[ValidatedRequest] = []
        self.invalid: list[tuple[ValidatedRequest, str]] = []
        self.fail_with: Exception | None = None

    def cameras(self) -> list[str]:
        return list(self.sizes)

    def frame_size(self, camera: str) -> tuple[int, int] | None:
        return self.sizes[camera]

    def known_objects(self, camera: str) -> set[int]:
        return set(self.objects[camera])

    def handle(self, req: ValidatedRequest) -> dict[str, Any]:
        try:
            check_valid(req, self)
        except AssertionError as e:
            self.invalid.append((req, repr(e)))
        self.calls.append(req)
        if self.fail_with is not None:
            raise self.fail_with
        if req.type in PROMPT_TYPES:
            check_frame_index(req.camera, req.frame_index, LATEST)
            self.objects[req.camera].add(req.obj_id)
            held = req.frame_index is not None and OLDEST_HELD <= req.frame_index <= LATEST
            return prompt_reply(frame_index=req.frame_index if held else LATEST,
                                requested_frame_index=req.frame_index, obj_ids=self.objects[req.camera])
        if req.type == "add_boxes":  # every box a new object, ids counting up from 100
            added = [100 + len(self.objects[req.camera]) + k for k in range(len(req.boxes))]
            self.objects[req.camera].update(added)
            reply = prompt_reply(frame_index=LATEST, requested_frame_index=req.frame_index,
                                 obj_ids=self.objects[req.camera])
            return {**reply, "added": added, "boxes": [{"status": "added", "obj_id": i, "iou": 0.0} for i in added]}
        if req.type == "remove":
            self.objects[req.camera].discard(req.obj_id)
            return {"obj_ids": sorted(self.objects[req.camera])}
        if req.type == "reset":
            removed = sorted(self.objects[req.camera])
            self.objects[req.camera].clear()
            return {"removed": removed, "obj_ids": []}
        return status_reply(StatusMessage(
            cameras={c: CameraStatus(fps=30.0, obj_ids=tuple(sorted(o))) for c, o in self.objects.items()},
            device="cpu"))


class RawClient:
    """A REQ socket that sends exactly the bytes it is given."""

    def __init__(self, context: zmq.Context, endpoint: str):
        self.context, self.endpoint = context, endpoint
        self.socket = self._connect()

    def _connect(self) -> zmq.Socket:
        sock = self.context.socket(zmq.REQ)
        sock.linger = 0
        sock.connect(self.endpoint)
        return sock

    def send_bytes(self, data: bytes, timeout_ms: int = 5000) -> dict[str, Any]:
        self.socket.send(data)
        if not self.socket.poll(timeout_ms):
            self.socket.close()
            self.socket = self._connect()
            raise TimeoutError("no reply")
        return msgpack.unpackb(self.socket.recv())

    def send(self, request: Any) -> dict[str, Any]:
        return self.send_bytes(msgpack.packb(request))

    def close(self) -> None:
        self.socket.close()


def request(type_: str, **fields: Any) -> dict[str, Any]:
    return {"v": PROTOCOL_VERSION, "type": type_, **fields}

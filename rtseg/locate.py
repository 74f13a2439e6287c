"""The client side of the cluster's front door: ask the directory where a camera runs.

`rtseg cluster` keeps a directory on the Ray head with a small ZeroMQ endpoint
(`cluster.directory`, default port 5570). One request, `locate` (docs/PROTOCOL.md):

    {"v": 1, "type": "locate", "id": 7, "camera": "gate"}      # camera optional: all of them
    -> {"v": 1, "ok": true, "type": "locate", "id": 7,
        "cameras": {"gate": {"state": "running", "pub": "tcp://10.0.0.7:41234",
                             "control": "tcp://10.0.0.7:41235", "node": ..., ...}}}

`pub` and `control` are None while the camera is not running (state `unplaced`, `starting`,
`failed`). Clients that go through the directory (`Subscriber(cluster=...)`,
`Controller(cluster=...)`) ask again when a camera falls silent, so they follow it to
another node after a failover without being restarted.
"""
from __future__ import annotations

import itertools
from typing import Any

import zmq

from rtseg.protocol import PROTOCOL_VERSION, packb, unpackb

LOCATE = "locate"
RUNNING = "running"


class LocateError(RuntimeError):
    """The directory refused (`code` as in docs/PROTOCOL.md) or did not answer (`code` "timeout")."""

    def __init__(self, code: str, message: str):
        super().__init__(f"locate [{code}]: {message}")
        self.code = code


class Locator:
    """A REQ client of the directory at `address` (tcp://HEAD:5570)."""

    def __init__(self, address: str, timeout: float = 3.0, *, context: zmq.Context | None = None):
        self.address = address
        self.timeout = timeout
        self._context = context or zmq.Context.instance()
        self._ids = itertools.count(1)
        self._socket = self._connect()

    def _connect(self) -> zmq.Socket:
        sock = self._context.socket(zmq.REQ)
        sock.linger = 0
        sock.connect(self.address)
        return sock

    def locate(self, camera: str | None = None) -> dict[str, dict[str, Any]]:
        """camera -> its entry (state, pub, control, node, ...); only `camera` when given."""
        request: dict[str, Any] = {"v": PROTOCOL_VERSION, "type": LOCATE, "id": next(self._ids)}
        if camera is not None:
            request["camera"] = camera
        self._socket.send(packb(request))
        if not self._socket.poll(int(self.timeout * 1000), zmq.POLLIN):
            self._socket.close(linger=0)  # a REQ socket is stuck after a lost reply
            self._socket = self._connect()
            raise LocateError("timeout", f"no reply from the cluster directory at {self.address} within "
                                         f"{self.timeout} s: is `rtseg cluster` running?")
        reply = unpackb(self._socket.recv())
        if not isinstance(reply, dict) or not reply.get("ok"):
            error = (reply.get("error") if isinstance(reply, dict) else None) or {}
            raise LocateError(error.get("code", "bad_reply"), error.get("message", f"{reply!r:.200}"))
        return reply["cameras"]

    def endpoints(self, camera: str | None = None, which: str = "pub") -> dict[str, str]:
        """camera -> its `which` ("pub" or "control") endpoint, running cameras only."""
        return {cam: e[which] for cam, e in self.locate(camera).items() if e.get(which)}

    def close(self) -> None:
        self._socket.close(linger=0)

    def __enter__(self) -> Locator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

"""A real Foxglove WebSocket client for tests (the `websockets` package, sync API): it speaks
the protocol as the Foxglove app does — JSON control messages, binary message data — and
decodes protobuf messages with the schema the server advertised."""
from __future__ import annotations

import base64
import json
import struct
import time
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from websockets.sync.client import connect

SUBPROTOCOLS = ["foxglove.sdk.v1", "foxglove.websocket.v1"]  # the SDK's name, and the protocol's old name
MESSAGE_DATA = 0x01


def message_class(schema_name: str, schema_b64: str) -> Any:
    """The protobuf class of `schema_name` built from an advertised FileDescriptorSet."""
    fds = descriptor_pb2.FileDescriptorSet.FromString(base64.b64decode(schema_b64))
    pool = descriptor_pool.DescriptorPool()
    for f in fds.file:
        pool.Add(f)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(schema_name))


class FoxgloveClient:
    def __init__(self, url: str, subprotocols: list[str] | None = None, timeout: float = 5.0, **options: Any):
        """`options` go to websockets' `connect` (e.g. `sock`, `max_queue`)."""
        self._connection = connect(url, subprotocols=subprotocols or SUBPROTOCOLS, open_timeout=timeout, **options)
        self.ws = self._connection.__enter__()
        self.subprotocol = self.ws.subprotocol
        self.server_info: dict | None = None
        self.channels: dict[str, dict] = {}  # topic -> advertised channel
        self._subscriptions: dict[int, str] = {}  # subscription id -> topic
        self._next_id = 1

    def close(self) -> None:
        self._connection.__exit__(None, None, None)

    def __enter__(self) -> FoxgloveClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def subscribe(self, topic: str) -> None:
        sid, self._next_id = self._next_id, self._next_id + 1
        self._subscriptions[sid] = topic
        self.ws.send(json.dumps({"op": "subscribe", "subscriptions": [{"id": sid, "channelId": self.channels[topic]["id"]}]}))

    def unsubscribe_all(self) -> None:
        self.ws.send(json.dumps({"op": "unsubscribe", "subscriptionIds": list(self._subscriptions)}))
        self._subscriptions.clear()

    def receive(self, timeout: float) -> tuple[str, int, bytes] | None:
        """The next message data (topic, receive time ns, payload); control messages on the way
        are taken in (serverInfo, advertise). None when `timeout` passes."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                raw = self.ws.recv(timeout=left)
            except TimeoutError:
                return None
            if isinstance(raw, bytes):
                op, sid, ts = struct.unpack_from("<BIQ", raw)
                if op == MESSAGE_DATA and sid in self._subscriptions:
                    return self._subscriptions[sid], ts, raw[13:]
                continue
            msg = json.loads(raw)
            if msg["op"] == "serverInfo":
                self.server_info = msg
            elif msg["op"] == "advertise":
                for ch in msg["channels"]:
                    self.channels[ch["topic"]] = ch
            elif msg["op"] == "unadvertise":
                gone = set(msg["channelIds"])
                self.channels = {t: c for t, c in self.channels.items() if c["id"] not in gone}
        return None

    def collect(self, wanted: dict[str, int], timeout: float) -> dict[str, list[bytes]]:
        """Subscribe to each wanted topic once it is advertised and gather payloads until each
        has its count (or `timeout`: what arrived so far)."""
        got: dict[str, list[bytes]] = {t: [] for t in wanted}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(len(got[t]) < n for t, n in wanted.items()):
            for topic in wanted:
                if topic in self.channels and topic not in self._subscriptions.values():
                    self.subscribe(topic)
            item = self.receive(min(0.2, max(0.01, deadline - time.monotonic())))
            if item is not None and item[0] in got:
                got[item[0]].append(item[2])
        return got

    def decode(self, topic: str, payload: bytes) -> Any:
        """A payload decoded with its channel's advertised schema (protobuf) or as JSON."""
        ch = self.channels[topic]
        if ch["encoding"] == "json":
            return json.loads(payload)
        assert ch["encoding"] == "protobuf" and ch["schemaEncoding"] == "protobuf", ch
        return message_class(ch["schemaName"], ch["schema"]).FromString(payload)

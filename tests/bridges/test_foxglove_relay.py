"""The relay in front of the Foxglove SDK server (rtseg.bridges.foxglove_relay), with a real
SDK server logging 100 kB messages at 50 Hz and real WebSocket clients on 127.0.0.1."""
from __future__ import annotations

import os
import socket
import struct
import threading
import time

import foxglove
import pytest
from websockets.exceptions import ConnectionClosed

from rtseg.bridges.foxglove_relay import SubprotocolRelay
from tests.helpers.foxglove_client import FoxgloveClient

BLOB = os.urandom(100_000)


@pytest.fixture
def served():
    """A relay (stall_s 2 s, handshake timeout 0.5 s) in front of an SDK server whose /blob
    channel carries a 100 kB message (its first 8 bytes: time.monotonic_ns()) every 20 ms."""
    context = foxglove.Context()
    server = foxglove.start_server(name="relay-test", host="127.0.0.1", port=0, context=context)
    relay = SubprotocolRelay(server.port, port=0, stall_s=2.0, handshake_timeout_s=0.5).start()
    channel = foxglove.Channel("/blob", schema=foxglove.Schema(name="blob", encoding="", data=b""),
                               message_encoding="octet-stream", context=context)
    stop = threading.Event()

    def log() -> None:
        while not stop.wait(0.02):
            channel.log(struct.pack("<Q", time.monotonic_ns()) + BLOB[8:])

    logger = threading.Thread(target=log, daemon=True)
    logger.start()
    yield server, relay
    stop.set()
    logger.join()
    server.stop()
    relay.stop()


def test_a_stalled_client_is_dropped_and_never_holds_up_another(served):
    _, relay = served
    url = f"ws://127.0.0.1:{relay.port}"
    stalled_sock = socket.create_connection(("127.0.0.1", relay.port))
    stalled_sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    with FoxgloveClient(url, sock=stalled_sock, max_queue=1) as stalled, FoxgloveClient(url) as live:
        assert stalled.collect({"/blob": 1}, timeout=5)["/blob"], "the stalled client got nothing at all"
        # from here on `stalled` reads nothing; `live` must keep getting fresh messages
        delays = []
        t0 = time.monotonic()
        while time.monotonic() - t0 < 3.0:
            for payload in live.collect({"/blob": 1}, timeout=0.5)["/blob"]:
                assert len(payload) == len(BLOB) and payload[8:] == BLOB[8:]
                delays.append((time.monotonic_ns() - struct.unpack_from("<Q", payload)[0]) / 1e9)
        assert len(delays) >= 30, f"the live client got {len(delays)} messages in 3 s (50 Hz sent)"
        assert sorted(delays)[len(delays) // 2] < 0.5, f"median delay {sorted(delays)[len(delays) // 2]:.3f} s"
        deadline = time.monotonic() + 5
        while relay.stats()["dropped_stalled"] == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert relay.stats()["dropped_stalled"] == 1 and relay.stats()["clients"] == 1, relay.stats()


def test_both_sides_close_together(served):
    server, relay = served
    with FoxgloveClient(f"ws://127.0.0.1:{relay.port}") as client:
        assert client.collect({"/blob": 1}, timeout=5)["/blob"]
        assert relay.stats()["clients"] == 1
    deadline = time.monotonic() + 5  # the client left: the relay's connection to the SDK ends too
    while relay.stats()["clients"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert relay.stats() == {"connected": 1, "refused": 0, "dropped_stalled": 0, "clients": 0}

    client = FoxgloveClient(f"ws://127.0.0.1:{relay.port}")
    assert client.collect({"/blob": 1}, timeout=5)["/blob"]
    server.stop()  # the SDK closes: its close frame reaches the client through the relay
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            client.ws.recv(timeout=5)
    assert closed.value.rcvd is not None, "closed without the server's close frame"
    client.close()


def test_a_silent_connection_is_closed_after_the_handshake_timeout(served):
    _, relay = served
    with socket.create_connection(("127.0.0.1", relay.port), timeout=5) as sock:
        t0 = time.monotonic()
        assert sock.recv(1) == b""
        assert 0.4 < time.monotonic() - t0 < 3
    assert relay.stats()["refused"] == 1

#!/usr/bin/env python
"""What the Foxglove relay (rtseg.bridges.foxglove_relay) costs: latency and CPU per message.

One foxglove-sdk server logs messages of --size bytes at --rate Hz; a WebSocket client
subscribed to them receives them once straight from the SDK port and once through the relay.
Reported per path: delay from `channel.log` to the client's receipt (p50 / p99, the client and
the server in this process, same clock) and this process's CPU time per message (server,
relay, client and logger together; the difference between the two rows is the relay's share).

    python tools/bench_foxglove_relay.py --size 100000 --rate 50 --messages 500
"""
from __future__ import annotations

import argparse
import json
import os
import struct
import sys
import threading
import time

import foxglove
from websockets.sync.client import connect

from rtseg.bridges.foxglove_relay import SubprotocolRelay


def measure(port: int, channel: foxglove.Channel, size: int, rate: float, count: int) -> dict[str, float]:
    with connect(f"ws://127.0.0.1:{port}", subprotocols=["foxglove.sdk.v1"], compression=None,
                 max_size=None) as ws:
        while True:  # serverInfo, then the channel's advertisement
            msg = json.loads(ws.recv(timeout=5))
            if msg["op"] == "advertise":
                break
        ws.send(json.dumps({"op": "subscribe", "subscriptions": [{"id": 1, "channelId": msg["channels"][0]["id"]}]}))
        time.sleep(0.5)
        body = os.urandom(size - 8)

        def log() -> None:
            next_t = time.monotonic()
            for _ in range(count):
                channel.log(struct.pack("<Q", time.monotonic_ns()) + body)
                next_t += 1 / rate
                time.sleep(max(0.0, next_t - time.monotonic()))

        cpu0, t0 = time.process_time(), time.monotonic()
        logger = threading.Thread(target=log)
        logger.start()
        delays = []
        while len(delays) < count:
            try:
                raw = ws.recv(timeout=5)
            except TimeoutError:
                break
            if isinstance(raw, bytes) and raw[0] == 1:
                delays.append((time.monotonic_ns() - struct.unpack_from("<Q", raw, 13)[0]) / 1e6)
        logger.join()
        cpu, wall = time.process_time() - cpu0, time.monotonic() - t0
    delays.sort()
    return {"received": len(delays), "p50_ms": delays[len(delays) // 2], "p99_ms": delays[int(len(delays) * 0.99)],
            "cpu_ms_per_msg": 1000 * cpu / max(1, len(delays)), "cpu_percent": 100 * cpu / wall}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100_000, help="message size in bytes (default 100000)")
    parser.add_argument("--rate", type=float, default=50.0, help="messages per second (default 50)")
    parser.add_argument("--messages", type=int, default=500, help="messages per path (default 500)")
    args = parser.parse_args(argv)
    context = foxglove.Context()
    server = foxglove.start_server(name="bench", host="127.0.0.1", port=0, context=context)
    relay = SubprotocolRelay(server.port, port=0).start()
    channel = foxglove.Channel("/bench", schema=foxglove.Schema(name="bench", encoding="", data=b""),
                               message_encoding="octet-stream", context=context)
    try:
        print(f"{args.messages} messages of {args.size} bytes at {args.rate:g} Hz")
        for name, port in (("direct (SDK port)", server.port), ("through the relay", relay.port)):
            r = measure(port, channel, args.size, args.rate, args.messages)
            print(f"{name:18s}  received {r['received']:4d}  delay p50 {r['p50_ms']:6.2f} ms  p99 {r['p99_ms']:6.2f} ms"
                  f"  CPU {r['cpu_ms_per_msg']:.3f} ms/message ({r['cpu_percent']:.1f} % of a core)")
    finally:
        server.stop()
        relay.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

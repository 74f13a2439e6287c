"""Both names of the Foxglove WebSocket protocol on one port.

The Foxglove WebSocket protocol was renamed: `foxglove-sdk` (and foxglove_bridge >= 3) accept
only the subprotocol `foxglove.sdk.v1`, while older Foxglove Studio, Lichtblick before its PR
#819, roslibjs-foxglove and other foxglove_bridge-era tools offer only `foxglove.websocket.v1`
and get HTTP 400. The two are the same protocol (foxglove discussion 1131); the SDK has no
option to accept the old name (the name is a constant of its handshake).

So the SDK server listens on a loopback port of its own, and this relay listens on the public
one. Per client it reads the HTTP upgrade request, chooses the name it answers with
(`foxglove.sdk.v1` if offered, else `foxglove.websocket.v1`; neither: 400, as the SDK does),
forwards the request to the SDK with `foxglove.sdk.v1`, puts the chosen name in the SDK's
101 response, and from then on copies bytes both ways. The WebSocket frames are not parsed
or rewritten: the handshake's accept key does not depend on the subprotocol, and the frames
are the same for both names.

Backpressure, per client: at most `chunk` bytes read and a 64 KiB write buffer towards each
client. While a client drains slowly its copy task waits, the SDK's queue for that connection
fills and the SDK drops that connection's oldest messages (as it does for a direct client);
other clients and the pipeline do not wait. A client that takes no bytes for `stall_s` is
dropped (both sockets aborted).
"""
from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

log = logging.getLogger("rtseg.bridges.foxglove")

SDK_SUBPROTOCOL = "foxglove.sdk.v1"
LEGACY_SUBPROTOCOL = "foxglove.websocket.v1"
SUBPROTOCOLS = (SDK_SUBPROTOCOL, LEGACY_SUBPROTOCOL)  # accepted, in order of preference

_HEAD_LIMIT = 64 * 1024  # an upgrade request or response larger than this is refused
_WRITE_HIGH_WATER = 64 * 1024


def _parse_head(head: bytes) -> tuple[str, list[tuple[str, str]]]:
    """The start line and the header fields of an HTTP/1.1 head (ending in CRLF CRLF)."""
    start, *lines = head.decode("latin-1").split("\r\n")
    headers = []
    for line in lines:
        if line:
            name, sep, value = line.partition(":")
            if not sep:
                raise ValueError(f"malformed header line {line!r}")
            headers.append((name.strip(), value.strip()))
    return start, headers


def _with_protocol(start: str, headers: list[tuple[str, str]], protocol: str) -> bytes:
    """The head again, its Sec-WebSocket-Protocol field(s) replaced by one naming `protocol`."""
    kept = [(n, v) for n, v in headers if n.lower() != "sec-websocket-protocol"]
    lines = [start, *(f"{n}: {v}" for n, v in kept), f"Sec-WebSocket-Protocol: {protocol}", "", ""]
    return "\r\n".join(lines).encode("latin-1")


def choose_subprotocol(headers: list[tuple[str, str]]) -> str | None:
    """The name to answer a request with: the preferred one of SUBPROTOCOLS it offers, or None."""
    offered = {p.strip() for n, v in headers if n.lower() == "sec-websocket-protocol" for p in v.split(",")}
    return next((p for p in SUBPROTOCOLS if p in offered), None)


def _refusal(status: str, text: str) -> bytes:
    body = text.encode()
    return (f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
            f"Connection: close\r\n\r\n").encode() + body


class SubprotocolRelay:
    """Listen on `host:port` (0: any free port, see `.port`) and relay each WebSocket client
    to the Foxglove SDK server on `upstream_host:upstream_port`, answering with the name of the
    protocol the client offered. `start()`, `stop()`; runs its own event loop thread."""

    def __init__(self, upstream_port: int, *, host: str = "127.0.0.1", port: int = 0,
                 upstream_host: str = "127.0.0.1", stall_s: float = 10.0, handshake_timeout_s: float = 10.0,
                 chunk: int = 256 * 1024) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.host, self.requested_port = host, port
        self.stall_s, self.handshake_timeout_s, self.chunk = stall_s, handshake_timeout_s, chunk
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="foxglove-relay", daemon=True)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task] = set()
        self._counts = {"connected": 0, "refused": 0, "dropped_stalled": 0}

    def start(self) -> SubprotocolRelay:
        self._thread.start()
        try:
            self._server = self._call(asyncio.start_server(self._handle, self.host, self.requested_port,
                                                           limit=_HEAD_LIMIT))
        except BaseException:
            self._shutdown_loop()
            raise
        return self

    @property
    def port(self) -> int:
        return int(self._server.sockets[0].getsockname()[1]) if self._server else self.requested_port

    def stats(self) -> dict[str, int]:
        """Clients relayed now (`clients`) and since the start (`connected`), handshakes
        `refused`, clients `dropped_stalled`."""
        return {**self._counts, "clients": len(self._tasks)}

    def stop(self) -> None:
        if self._server is not None:
            self._call(self._close())
            self._server = None
        self._shutdown_loop()

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def _shutdown_loop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
        if not self._loop.is_running():
            self._loop.close()

    async def _close(self, grace_s: float = 1.0) -> None:
        """Stop listening; give the clients `grace_s` to finish (after the SDK server stopped,
        its close frames are on their way), then cut them."""
        assert self._server is not None
        self._server.close()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=grace_s)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    # ------------------------------------------------------------ per client
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        writer.transport.set_write_buffer_limits(high=_WRITE_HIGH_WATER)
        up_writer: asyncio.StreamWriter | None = None
        peer = writer.get_extra_info("peername")
        stalled = False
        try:
            try:
                async with asyncio.timeout(self.handshake_timeout_s):
                    start, headers = _parse_head(await reader.readuntil(b"\r\n\r\n"))
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError):
                self._counts["refused"] += 1
                return
            protocol = choose_subprotocol(headers)
            if protocol is None:
                self._counts["refused"] += 1
                log.info("Foxglove: refused %s: it offers neither %s", peer, " nor ".join(SUBPROTOCOLS))
                writer.write(_refusal("400 Bad Request", "Missing expected sec-websocket-protocol header: "
                                      + " or ".join(SUBPROTOCOLS)))
                async with asyncio.timeout(self.handshake_timeout_s):
                    await writer.drain()
                return
            up_reader, up_writer = await asyncio.open_connection(*self.upstream, limit=_HEAD_LIMIT)
            up_writer.write(_with_protocol(start, headers, SDK_SUBPROTOCOL))
            async with asyncio.timeout(self.handshake_timeout_s):
                raw = await up_reader.readuntil(b"\r\n\r\n")
            status, response = _parse_head(raw)
            upgraded = status.split(" ", 2)[1:2] == ["101"]
            writer.write(_with_protocol(status, response, protocol) if upgraded else raw)  # else: the SDK's refusal
            if upgraded:
                self._counts["connected"] += 1
                log.info("Foxglove: client %s connected (%s)", peer, protocol)
            stalled = await self._relay(reader, writer, up_reader, up_writer)
            if stalled:
                self._counts["dropped_stalled"] += 1
                log.warning("Foxglove: client %s took nothing for %.0f s: dropped", peer, self.stall_s)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError) as e:
            log.info("Foxglove: client %s: %s", peer, e or type(e).__name__)
        except asyncio.CancelledError:
            pass  # stop(): end quietly (asyncio's stream callback logs a cancelled connection task as an error)
        finally:
            self._tasks.discard(task)
            for w in (writer, up_writer):
                if w is not None:
                    if stalled:
                        w.transport.abort()  # its unsent bytes would never go out
                    else:
                        w.close()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     up_reader: asyncio.StreamReader, up_writer: asyncio.StreamWriter) -> bool:
        """Copy bytes both ways until either side closes; True when the client stalled."""
        down = asyncio.ensure_future(self._copy(up_reader, writer))
        up = asyncio.ensure_future(self._copy(reader, up_writer))
        try:
            done, _ = await asyncio.wait({down, up}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (down, up):
                t.cancel()
            await asyncio.gather(down, up, return_exceptions=True)
        return down in done and isinstance(down.exception(), TimeoutError)

    async def _copy(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancel
        while data := await src.read(self.chunk):
            dst.write(data)
            async with asyncio.timeout(self.stall_s):
                await dst.drain()

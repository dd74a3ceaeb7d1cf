"""CONNECT without inspection: the authority it names, and splicing bytes both ways
between the script and the checked upstream address, counting them, at the protocol
level (each end's bytes written to the other's transport as they arrive)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from typing import cast

from daemon.egress.wire import HttpSide

# The first byte of a TLS ClientHello (record type 22, handshake).
TLS_HANDSHAKE = b"\x16"

# After one direction ends, the other gets this long to finish before both close.
HALF_CLOSE_GRACE = 5.0


def parse_authority(authority: str) -> tuple[str, int]:
    """`host:port` or `[v6]:port`, as CONNECT names its target."""
    host, sep, port = authority.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536 or not host:
        raise ValueError(f"egress: CONNECT needs host:port, not {authority[:200]!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


class Pipe(asyncio.Protocol):
    """One end of a splice: what it reads goes straight to its peer's transport (no
    stream buffer, no coroutine per chunk). Its peer's full write buffer pauses its
    reading; its EOF half-closes the peer. Bytes that come before `start` (a server
    that speaks first, before the client has its 200) are held back until then."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: Pipe | None = None
        self.moved = 0
        self.finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._held: list[bytes] | None = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def start(self) -> None:
        held, self._held = self._held, None
        for data in held or ():
            self._forward(data)

    def data_received(self, data: bytes) -> None:
        self.moved += len(data)
        if self._held is not None:
            self._held.append(data)
        else:
            self._forward(data)

    def _forward(self, data: bytes) -> None:
        sink = self.peer.transport if self.peer is not None else None
        if sink is not None and not sink.is_closing():
            sink.write(data)

    def eof_received(self) -> bool:
        self._half_close_peer()
        self._finish()
        return True  # the other direction may still be flowing

    def connection_lost(self, exc: Exception | None) -> None:
        self._half_close_peer()
        self._finish()

    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()

    def _half_close_peer(self) -> None:
        self.start()  # whatever was held goes first
        sink = self.peer.transport if self.peer is not None else None
        if sink is not None and not sink.is_closing() and sink.can_write_eof():
            with contextlib.suppress(OSError):
                sink.write_eof()

    def _finish(self) -> None:
        if not self.finished.done():
            self.finished.set_result(None)


def pipes() -> tuple[Pipe, Pipe]:
    """The client's end and the upstream's end of a splice, each the other's peer."""
    client_end, upstream_end = Pipe(), Pipe()
    client_end.peer, upstream_end.peer = upstream_end, client_end
    return client_end, upstream_end


async def splice(client: HttpSide, client_end: Pipe, upstream_end: Pipe) -> tuple[int, int]:
    """Hand the client's transport (paused since its CONNECT) to `client_end` and relay
    until both directions are done; (bytes sent upstream, bytes received)."""
    transport = client.transport
    assert transport is not None and upstream_end.transport is not None
    leftover = client.trailing
    if leftover:
        upstream_end.transport.write(leftover)
    transport.set_protocol(client_end)
    client_end.connection_made(transport)
    client_end.start()
    upstream_end.start()
    if not transport.is_closing():
        transport.resume_reading()
    ends = {client_end.finished, upstream_end.finished}
    try:
        _, pending = await asyncio.wait(ends, return_when=asyncio.FIRST_COMPLETED)
        if pending:
            await asyncio.wait(pending, timeout=HALF_CLOSE_GRACE)
    finally:
        upstream_end.transport.close()
    return len(leftover) + client_end.moved, upstream_end.moved


async def first_byte(transport: asyncio.BaseTransport, timeout: float) -> bytes:
    """The first byte waiting on the transport's socket, left there (MSG_PEEK); b""
    when the peer closed or sent nothing in time. The transport's reading must be
    paused. A duplicate of the fd is watched, so the loop's own registration of the
    socket is not disturbed."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return b""
    loop = asyncio.get_running_loop()
    with socket.socket(fileno=os.dup(sock.fileno())) as watched:
        ready: asyncio.Future[None] = loop.create_future()

        def readable() -> None:
            if not ready.done():
                ready.set_result(None)

        loop.add_reader(watched.fileno(), readable)
        try:
            await asyncio.wait_for(ready, timeout)
        except TimeoutError:
            return b""
        finally:
            loop.remove_reader(watched.fileno())
        try:
            return watched.recv(1, socket.MSG_PEEK)
        except OSError:
            return b""

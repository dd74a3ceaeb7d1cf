"""CONNECT without inspection: the authority it names, and splicing bytes both ways
between the script and the checked upstream address, counting them."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket

from daemon.egress.wire import READ_SIZE, HttpSide

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


async def splice(
    client: HttpSide, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> tuple[int, int]:
    """Relay until both sides are done; (bytes sent upstream, bytes received)."""
    leftover = client.trailing
    if leftover:
        writer.write(leftover)
    moved_up, moved_down = [len(leftover)], [0]
    up = asyncio.ensure_future(_pipe(client.reader, writer, moved_up))
    down = asyncio.ensure_future(_pipe(reader, client.writer, moved_down))
    try:
        _, pending = await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        if pending:
            await asyncio.wait(pending, timeout=HALF_CLOSE_GRACE)
    finally:
        for task in (up, down):
            task.cancel()
        writer.close()
    return moved_up[0], moved_down[0]


async def _pipe(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, moved: list[int]
) -> None:
    """Copy until EOF, then half-close; `moved[0]` counts as it goes, so a cancelled
    pipe still reports what it moved."""
    with contextlib.suppress(OSError):
        while data := await reader.read(READ_SIZE):
            moved[0] += len(data)
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()


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

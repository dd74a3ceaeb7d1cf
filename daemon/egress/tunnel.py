"""CONNECT without inspection: the authority it names, and splicing bytes both ways
between the script and the checked upstream address, counting them."""

from __future__ import annotations

import asyncio
import contextlib

from daemon.egress.wire import READ_SIZE, HttpSide

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

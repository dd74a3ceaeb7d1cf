"""Exchanges relayed from the connections' callbacks (daemon/egress/inline.py) and
the points where they are handed to the relay's coroutine: pipelined requests, a
response split over reads, a client asking to close, and a connection ended with a
request in flight. A raw loopback server controls how its answers are cut."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from tests.daemon.egress.conftest import EgressEnv

Answer = Callable[[asyncio.StreamWriter, bytes], Awaitable[None]]


@dataclass
class RawServer:
    port: int = 0
    requests: list[bytes] = field(default_factory=list)
    connections: int = 0
    closed: asyncio.Event = field(default_factory=asyncio.Event)


async def _small(writer: asyncio.StreamWriter, head: bytes) -> None:
    body = head.split(b" ", 2)[1]
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))


@pytest.fixture
async def raw_server() -> AsyncIterator[Callable[[Answer], Awaitable[RawServer]]]:
    servers: list[asyncio.Server] = []

    async def start(answer: Answer) -> RawServer:
        state = RawServer()

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            state.connections += 1
            try:
                while True:
                    head = await reader.readuntil(b"\r\n\r\n")
                    state.requests.append(head)
                    await answer(writer, head)
                    await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError):
                state.closed.set()
            finally:
                writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        servers.append(server)
        state.port = server.sockets[0].getsockname()[1]
        return state

    yield start
    for server in servers:
        server.close()


def _get(port: int, path: str, extra: str = "") -> bytes:
    return f"GET http://127.0.0.1:{port}{path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode()


async def _answers(reader: asyncio.StreamReader, count: int) -> list[bytes]:
    bodies = []
    for _ in range(count):
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        bodies.append(await asyncio.wait_for(reader.readexactly(length), 10))
    return bodies


async def test_pipelined_requests_are_answered_in_order_and_logged(
    egress: EgressEnv, raw_server: Callable[[Answer], Awaitable[RawServer]]
) -> None:
    server = await raw_server(_small)
    channel, _ = await egress.open(ports=(server.port,))
    reader, writer = await asyncio.open_unix_connection(channel.socket_path)
    writer.write(_get(server.port, "/first"))  # opens the upstream (the coroutine's part)
    assert await _answers(reader, 1) == [b"/first"]
    writer.write(b"".join(_get(server.port, f"/p{n}") for n in range(5)))
    assert await _answers(reader, 5) == [b"/p%d" % n for n in range(5)]
    writer.write(_get(server.port, "/last", "Connection: close\r\n"))
    assert await _answers(reader, 1) == [b"/last"]
    assert await asyncio.wait_for(reader.read(), 10) == b""  # closed after the close asked for
    writer.close()
    log = channel.take_log()
    assert log.total == 7 and server.connections == 1
    assert [e.url for e in log.entries][-1] == f"http://127.0.0.1:{server.port}/last"
    assert all(e.status == 200 and e.bytes_in > 0 for e in log.entries)  # type: ignore[union-attr]


async def _split(writer: asyncio.StreamWriter, head: bytes) -> None:
    """The head, then the body a moment later: the response comes in two reads."""
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
    await writer.drain()
    await asyncio.sleep(0.05)  # (not a wait for a condition: the gap is the test)
    writer.write(b"later")


async def test_a_response_split_over_reads_is_relayed_whole(
    egress: EgressEnv, raw_server: Callable[[Answer], Awaitable[RawServer]]
) -> None:
    server = await raw_server(_split)
    channel, _ = await egress.open(ports=(server.port,))
    reader, writer = await asyncio.open_unix_connection(channel.socket_path)
    for _ in range(3):  # the first opens the upstream, the next two are sent inline
        writer.write(_get(server.port, "/split"))
        assert await _answers(reader, 1) == [b"later"]
    writer.close()
    assert channel.take_log().total == 3 and server.connections == 1


async def _never(writer: asyncio.StreamWriter, head: bytes) -> None:
    if b"/hang" not in head:
        await _small(writer, head)


async def test_a_connection_ended_with_a_request_in_flight_closes_its_upstream(
    egress: EgressEnv, raw_server: Callable[[Answer], Awaitable[RawServer]]
) -> None:
    server = await raw_server(_never)
    channel, _ = await egress.open(ports=(server.port,))
    reader, writer = await asyncio.open_unix_connection(channel.socket_path)
    writer.write(_get(server.port, "/first"))
    assert await _answers(reader, 1) == [b"/first"]
    writer.write(_get(server.port, "/hang"))  # sent upstream inline, never answered
    async with asyncio.timeout(10):
        while len(server.requests) < 2:
            await asyncio.sleep(0.01)
    channel.close_connections()  # as when the worker is killed
    await asyncio.wait_for(server.closed.wait(), 10)
    assert await asyncio.wait_for(reader.read(), 10) == b""
    writer.close()
    log = channel.take_log()
    assert log.total == 2 and log.entries[-1].bytes_out > 0  # counted, though unanswered

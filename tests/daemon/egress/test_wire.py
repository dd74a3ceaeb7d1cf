"""HttpSide on a real socket pair: a body that comes faster than it is relayed pauses
the side's reading (its queue stays bounded) and resumes it as the queue drains; a
body framed by the end of the connection ends with END even when the close came
before the head was taken."""

from __future__ import annotations

import asyncio
import socket

from daemon.egress.messages import CLOSED, END, Head
from daemon.egress.wire import HIGH_WATER, HttpSide
from tests.daemon.egress.waiting import wait_for

BODY = 4 * HIGH_WATER


async def _side_over_socketpair() -> tuple[HttpSide, socket.socket]:
    ours, theirs = socket.socketpair()
    loop = asyncio.get_running_loop()
    _, side = await loop.create_connection(lambda: HttpSide(requests=False), sock=ours)
    theirs.setblocking(False)
    return side, theirs


async def _send(peer: socket.socket, data: bytes) -> None:
    await asyncio.get_running_loop().sock_sendall(peer, data)


async def test_a_fast_body_pauses_reading_until_it_is_taken() -> None:
    side, peer = await _side_over_socketpair()
    side.expect_response(head_only=False)
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % BODY
    sender = asyncio.ensure_future(_send(peer, head + b"b" * BODY))
    try:
        await wait_for(lambda: side._read_paused, "the side stops reading")
        queued = side._buffered
        assert HIGH_WATER < queued < BODY  # bounded: the rest waits in the socket
        assert not sender.done()
        event = await side.next_event()
        assert isinstance(event, Head) and event.status == 200
        received = 0
        while (event := await side.next_event()) is not END:
            assert isinstance(event, bytes)
            received += len(event)
        assert received == BODY
        await asyncio.wait_for(sender, 10)
    finally:
        side.close()
        peer.close()


async def test_a_body_until_close_ends_even_when_closed_before_its_head_is_taken() -> None:
    side, peer = await _side_over_socketpair()
    side.expect_response(head_only=False)
    await _send(peer, b"HTTP/1.1 200 OK\r\n\r\nall of it")
    peer.close()
    await wait_for(lambda: side.at_eof, "the side sees the close")
    events = [await side.next_event() for _ in range(4)]
    assert isinstance(events[0], Head)
    assert events[1:] == [b"all of it", END, CLOSED]
    side.close()

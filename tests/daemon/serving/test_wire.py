"""daemon.serving.wire: the frame codec, the worker protocol and the fd-passing control channel."""

from __future__ import annotations

import asyncio
import os
import socket
import struct

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from daemon.serving.wire import (
    ControlChannel,
    FrameDecoder,
    ProtocolError,
    encode,
    open_worker_channel,
)
from tests.daemon.replica_support import UVLOOP_WARNING, event_loop_policy  # noqa: F401

pytestmark = UVLOOP_WARNING

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
frames = st.dictionaries(st.text(max_size=8), json_values, max_size=5)


def test_encode_is_length_prefixed_json() -> None:
    data = encode({"t": "ping", "id": 1})
    (size,) = struct.unpack(">I", data[:4])
    assert size == len(data) - 4
    assert orjson.loads(data[4:]) == {"t": "ping", "id": 1}


@given(st.lists(frames, max_size=6), st.integers(1, 17))
def test_decoder_reassembles_any_split(items: list[dict], chunk: int) -> None:
    stream = b"".join(encode(f) for f in items)
    decoder = FrameDecoder()
    out: list[dict] = []
    for i in range(0, len(stream), chunk):
        out += decoder.feed(stream[i : i + chunk])
    assert out == items
    assert decoder.pending_bytes == 0


def test_decoder_refuses_oversized_frame() -> None:
    with pytest.raises(ProtocolError, match="limit"):
        FrameDecoder(max_frame_bytes=10).feed(struct.pack(">I", 11) + b"x" * 11)


@pytest.mark.parametrize("body", [b"not json", b"[1,2]"])
def test_decoder_refuses_non_object(body: bytes) -> None:
    with pytest.raises(ProtocolError):
        FrameDecoder().feed(struct.pack(">I", len(body)) + body)


async def test_worker_channel_round_trip_and_close() -> None:
    ours, theirs = socket.socketpair()
    got: list[dict] = []
    closed = asyncio.get_running_loop().create_future()
    proto = await open_worker_channel(ours, got.append, closed.set_result)
    proto.send({"t": "call", "id": "a"})
    theirs.setblocking(True)
    raw = theirs.recv(1024)
    assert FrameDecoder().feed(raw) == [{"t": "call", "id": "a"}]
    big = {"t": "result", "value": "x" * 300_000}
    theirs.setblocking(False)
    # bigger than the socket buffer: write it from the loop so the reader can drain it
    await asyncio.get_running_loop().sock_sendall(
        theirs, encode(big) + encode({"t": "pong", "id": 2})
    )
    theirs.close()
    assert await asyncio.wait_for(closed, 2) is None
    assert got == [big, {"t": "pong", "id": 2}]


async def test_worker_channel_closes_on_garbage() -> None:
    ours, theirs = socket.socketpair()
    closed = asyncio.get_running_loop().create_future()
    await open_worker_channel(ours, lambda f: None, closed.set_result)
    theirs.sendall(struct.pack(">I", 3) + b"[1]")
    assert isinstance(await asyncio.wait_for(closed, 2), ProtocolError)
    theirs.close()


async def test_control_channel_receives_fd_with_its_frame() -> None:
    ours, theirs = socket.socketpair()
    loop = asyncio.get_running_loop()
    received: list[tuple[dict, int | None]] = []
    closed = loop.create_future()
    chan: ControlChannel

    def on_frame(frame: dict) -> None:
        received.append((frame, chan.take_fd() if frame["t"] == "worker" else None))

    chan = ControlChannel(ours, on_frame, closed.set_result)
    a, b = socket.socketpair()
    try:
        theirs.sendall(encode({"t": "hello", "functions": ["f"]}))
        socket.send_fds(theirs, [encode({"t": "worker", "worker": 0, "pid": 7})], [a.fileno()])
        theirs.close()
        assert await asyncio.wait_for(closed, 2) is None
        assert [f["t"] for f, _ in received] == ["hello", "worker"]
        fd = received[1][1]
        assert fd is not None
        # The fd we got is the same socket: what we write reaches b.
        os.write(fd, b"hi")
        assert b.recv(2) == b"hi"
        os.close(fd)
    finally:
        a.close()
        b.close()


async def test_control_channel_send_and_unclaimed_fds_closed() -> None:
    ours, theirs = socket.socketpair()
    closed = asyncio.get_running_loop().create_future()
    chan = ControlChannel(ours, lambda f: None, closed.set_result)
    chan.send({"t": "kill_worker", "worker": 1})
    assert FrameDecoder().feed(theirs.recv(1024)) == [{"t": "kill_worker", "worker": 1}]
    a, b = socket.socketpair()
    socket.send_fds(theirs, [encode({"t": "noise"})], [a.fileno()])
    a.close()
    await asyncio.sleep(0.05)
    chan.close()
    await asyncio.wait_for(closed, 2)
    # the only other reference to `a` was the queued fd: closing it gives b an EOF
    b.settimeout(2)
    assert b.recv(1) == b""
    b.close()
    theirs.close()
    with pytest.raises(ConnectionResetError):
        chan.send({"t": "ping"})

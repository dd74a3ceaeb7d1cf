"""The Python frame codec of runtimes/protocol.py."""

from __future__ import annotations

import array
import os
import socket
import threading

import pytest

from runtimes import protocol


def test_encode_is_a_length_prefixed_compact_json_object() -> None:
    frame = protocol.encode({"t": "ping", "id": "é"})
    body = '{"t":"ping","id":"é"}'.encode()
    assert frame == len(body).to_bytes(4, "big") + body


def test_nan_is_never_sent() -> None:
    with pytest.raises(ValueError):
        protocol.encode({"t": "result", "value": float("nan")})


def test_decoder_takes_bytes_in_any_pieces() -> None:
    data = protocol.encode({"t": "a"}) + protocol.encode({"t": "b", "n": 1})
    decoder = protocol.FrameDecoder()
    got = []
    for i in range(len(data)):
        got += decoder.feed(data[i : i + 1])
    assert got == [{"t": "a"}, {"t": "b", "n": 1}]


@pytest.mark.parametrize(
    "frame",
    [
        (10**6).to_bytes(4, "big"),
        (1).to_bytes(4, "big") + b"x",
        (2).to_bytes(4, "big") + b"[]",
        (5).to_bytes(4, "big") + b"{bad}",
        (9).to_bytes(4, "big") + b'{"t": 1 }',
    ],
)
def test_bad_frames_are_protocol_errors(frame: bytes) -> None:
    with pytest.raises(protocol.ProtocolError):
        protocol.FrameDecoder(max_frame=1000).feed(frame)


def test_read_frame_and_fd_passing() -> None:
    a, b = socket.socketpair()
    r, w = os.pipe()
    try:
        protocol.send(a, protocol.encode({"t": "worker", "worker": 1}), (r,))
        fds = array.array("i")
        data, anc, _, _ = b.recvmsg(1024, socket.CMSG_SPACE(4))
        fds.frombytes(anc[0][2])
        assert protocol.FrameDecoder().feed(data) == [{"t": "worker", "worker": 1}]
        os.write(w, b"!")
        assert os.read(fds[0], 1) == b"!"
        os.close(fds[0])
        protocol.send(a, protocol.encode({"t": "ping"}))
        frames = protocol.FrameReader(b)
        assert frames.read() == {"t": "ping"}
        a.close()
        assert frames.read() is None
    finally:
        b.close()
        os.close(r)
        os.close(w)


def test_frame_reader_takes_frames_split_and_joined_across_reads() -> None:
    small = [{"t": "call", "id": str(n), "payload": {"s": "é" * n}} for n in range(5)]
    big = {"t": "call", "id": "big", "payload": {"s": "x" * 300_000}}  # past the buffer
    data = b"".join(protocol.encode(m) for m in [*small, big, *small])
    a, b = socket.socketpair()
    with a, b:
        # Sent in pieces by a thread, so that reads end inside a header, inside a body,
        # between frames, and a big frame needs several reads.
        pieces = [data[i : i + 7] for i in range(0, 203, 7)] + [data[203:]]
        sender = threading.Thread(target=lambda: [a.sendall(p) for p in pieces])
        sender.start()
        frames = protocol.FrameReader(b)
        got = [frames.read() for _ in range(2 * len(small) + 1)]
        sender.join()
        assert got == [*small, big, *small]
        a.sendall(protocol.encode({"t": "ping"})[:6])
        a.shutdown(socket.SHUT_WR)
        with pytest.raises(protocol.ProtocolError, match="inside a frame"):
            frames.read()


def test_frame_reader_refuses_a_frame_past_the_limit() -> None:
    a, b = socket.socketpair()
    with a, b:
        a.sendall(protocol.encode({"t": "call", "payload": "x" * 100}))
        with pytest.raises(protocol.ProtocolError, match=r"allowed 2\.\.50"):
            protocol.FrameReader(b, max_frame=50).read()


def test_loads_exact_keeps_every_digit_of_a_number() -> None:
    from decimal import Decimal

    value = protocol.loads_exact('{"n": 3.14159265358979323846264338327950288, "i": 7}')
    assert value == {"n": Decimal("3.14159265358979323846264338327950288"), "i": 7}
    assert type(value["i"]) is int
    for bad in ('{"n": NaN}', '{"n": 1} x', "{"):
        with pytest.raises(ValueError):
            protocol.loads_exact(bad)


def test_an_exact_frame_decodes_numbers_as_decimals() -> None:
    from decimal import Decimal

    a, b = socket.socketpair()
    with a, b:
        a.sendall(protocol.encode_text('{"t":"run","inputs":{"x":{"n":0.1}}}'))
        frame = protocol.FrameReader(b, exact=True).read()
    assert frame == {"t": "run", "inputs": {"x": {"n": Decimal("0.1")}}}

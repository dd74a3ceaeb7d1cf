"""The lean front's HTTP/1.1 handling, case by case: keep-alive, pipelining, chunked
bodies, Expect: 100-continue, limits, slow clients, HEAD, unknown methods and
malformed requests (the differential test compares it with aiohttp as a whole)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from daemon.gateway.front_types import FrontLimits
from daemon.serving.dispatcher import CallResult
from tests.daemon.gateway.front_harness import MAX_BODY, Servers, exchange, servers
from tests.daemon.gateway.test_app import KEY_A

LIMITS = FrontLimits(header_timeout_s=0.5, body_timeout_s=0.5, idle_timeout_s=0.5,
                     max_head_bytes=16384, sweep_s=0.05)  # fmt: skip
AUTH = f"Authorization: Bearer {KEY_A.key}\r\n".encode()


class Echo:
    """A dispatcher that answers the payload after `delay` seconds."""

    functions = None

    async def call(self, function: str, payload: Any = None, *, payload_json: bytes | None = None,
                   call_id: str | None = None) -> CallResult:  # fmt: skip
        doc = orjson.loads(payload_json or b"{}")
        await asyncio.sleep(doc.get("delay", 0))
        return CallResult(call_id or "", doc, "", "", False, 0.0, 0.0, 0.0, 0.0, 1, "r")

    def submit(self, function: str, done: Any, payload: Any = None, *,
               payload_json: bytes | None = None, call_id: str | None = None) -> None:  # fmt: skip
        """`call` with a callback, as the real dispatcher's submit."""
        task = asyncio.get_running_loop().create_task(
            self.call(function, payload_json=payload_json, call_id=call_id)
        )
        task.add_done_callback(lambda t: done(t.result()))


@pytest.fixture(scope="module")
def front() -> Iterator[Servers]:
    with servers(LIMITS) as s:
        version = s.gateways[1].routes.serving("alpha")
        assert version is not None
        version.dispatcher = Echo()  # type: ignore[assignment]
        yield s


def call(body: bytes, version: bytes = b"HTTP/1.1", extra: bytes = b"") -> bytes:
    return (
        b"POST /v1/scripts/alpha/functions/f " + version + b"\r\nHost: x\r\n" + AUTH + extra
        + b"Content-Length: %d\r\n\r\n" % len(body) + body
    )  # fmt: skip


def connect(s: Servers) -> socket.socket:
    return socket.create_connection(("127.0.0.1", s.front_port), timeout=5)


def read_until_closed(sock: socket.socket, timeout: float = 5.0) -> tuple[bytes, float]:
    """Everything the server sends until it closes; and how long that took."""
    t0 = time.monotonic()
    sock.settimeout(timeout)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data, time.monotonic() - t0


def test_keep_alive_serves_many_requests_on_one_connection(front: Servers) -> None:
    replies, closed = exchange(front.front_port, call(b'{"n": 1}') + call(b'{"n": 2}'), [False] * 2)
    assert [orjson.loads(r.body) for r in replies] == [
        {"result": {"n": 1}}, {"result": {"n": 2}},
    ]  # fmt: skip
    assert not closed and "connection" not in replies[0].headers


def test_http10_closes_unless_asked_to_keep_alive(front: Servers) -> None:
    replies, _ = exchange(front.front_port, call(b"{}", b"HTTP/1.0"), [False])
    assert replies[0].status == 200 and replies[0].version == "1.0"
    kept = call(b"{}", b"HTTP/1.0", b"Connection: keep-alive\r\n")
    replies, closed = exchange(front.front_port, kept + kept, [False, False])
    assert [r.status for r in replies] == [200, 200] and not closed
    assert replies[0].headers["connection"] == "keep-alive"


def test_pipelined_answers_keep_the_order_of_the_requests(front: Servers) -> None:
    # Later requests finish first; their answers still wait for the earlier ones.
    bodies = [b'{"delay": %.2f, "i": %d}' % (0.05 * (5 - i), i) for i in range(6)]
    raw = b"".join(call(b) for b in bodies) + b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    replies, _ = exchange(front.front_port, raw, [False] * 7)
    assert [orjson.loads(r.body).get("result", {}).get("i") for r in replies[:6]] == list(range(6))
    assert replies[6].body == b'{"ok":true}'


def test_chunked_bodies_in_pieces(front: Servers) -> None:
    head = b"POST /v1/scripts/alpha/functions/f HTTP/1.1\r\nHost: x\r\n" + AUTH
    raw = head + b'Transfer-Encoding: chunked\r\n\r\n3\r\n{"a\r\n5\r\n": 1}\r\n0\r\n\r\n'
    replies, _ = exchange(front.front_port, raw, [False], chunks=len(raw))  # byte by byte
    assert orjson.loads(replies[0].body) == {"result": {"a": 1}}


def test_a_chunked_body_over_the_limit_is_413_and_closes(front: Servers) -> None:
    head = b"POST /v1/scripts/alpha/functions/f HTTP/1.1\r\nHost: x\r\n" + AUTH
    piece = b"%x\r\n%s\r\n" % (1024, b" " * 1024)
    raw = head + b"Transfer-Encoding: chunked\r\n\r\n" + piece * 8
    replies, closed = exchange(front.front_port, raw, [False], wait_close=True)
    assert replies[0].status == 413 and closed
    assert orjson.loads(replies[0].body)["error"]["type"] == "payload_too_large"


def test_expect_100_continue_is_answered_before_the_body(front: Servers) -> None:
    with connect(front) as sock:
        head = call(b"{}", extra=b"Expect: 100-continue\r\n")[:-2]
        sock.sendall(head)
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"{}")
        assert sock.recv(4096).startswith(b"HTTP/1.1 200 OK\r\n")


def test_expect_with_a_body_over_the_limit_gets_413_without_100(front: Servers) -> None:
    with connect(front) as sock:
        sock.sendall(
            b"POST /v1/scripts/alpha/functions/f HTTP/1.1\r\nHost: x\r\n" + AUTH
            + b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY + 1)
        )  # fmt: skip
        data, _ = read_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 413 ") and b"100 Continue" not in data


@pytest.mark.parametrize(
    "extra",
    [b"X-Long: " + b"a" * 9000 + b"\r\n", b"".join(b"X-%d: 1\r\n" % i for i in range(129))],
)
def test_header_limits(front: Servers, extra: bytes) -> None:
    replies, closed = exchange(front.front_port, call(b"{}", extra=extra), [False], wait_close=True)
    assert replies[0].status == 400 and closed
    assert orjson.loads(replies[0].body)["error"]["type"] == "bad_request"


def test_a_head_larger_than_the_limit_is_refused_while_it_arrives(front: Servers) -> None:
    with connect(front) as sock:
        sock.sendall(b"POST /v1/scripts/alpha/functions/f HTTP/1.1\r\nHost: x\r\n")
        for _ in range(5):  # 20 KiB of headers, never the end of the head
            sock.sendall(b"".join(b"X-%d: %s\r\n" % (i, b"v" * 1000) for i in range(4)))
        data, _ = read_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 400 ") and b"16384" in data


def test_a_slow_head_times_out_even_when_it_trickles(front: Servers) -> None:
    with connect(front) as sock:
        t0 = time.monotonic()
        sock.sendall(b"POST /v1/scripts/alpha/functions/f HTTP/1.1\r\n")
        with pytest.raises(OSError):  # slowloris: a byte now and then never ends the head
            while time.monotonic() - t0 < 5:
                sock.sendall(b"X")
                time.sleep(0.05)
        data, _ = read_until_closed(sock)
    assert b" 408 " in data.split(b"\r\n", 1)[0] and time.monotonic() - t0 < 3


def test_a_slow_body_times_out(front: Servers) -> None:
    with connect(front) as sock:
        sock.sendall(call(b'{"a": 1}')[:-3])
        data, took = read_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 408 ") and took < 3
    assert orjson.loads(data.split(b"\r\n\r\n", 1)[1])["error"]["type"] == "request_timeout"


def test_an_idle_connection_is_closed_without_an_answer(front: Servers) -> None:
    with connect(front) as sock:
        sock.sendall(call(b"{}"))
        data, took = read_until_closed(sock)
    assert data.count(b"HTTP/1.1 ") == 1 and took < 3


def test_head_answers_without_a_body(front: Servers) -> None:
    with connect(front) as sock:
        sock.sendall(b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\n"
                     b"Host: x\r\nConnection: close\r\n\r\n")  # fmt: skip
        data, _ = read_until_closed(sock)
    head, rest = data.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200 ") and b"Content-Length: 11" in head
    assert rest.startswith(b"HTTP/1.1 200 ") and rest.endswith(b'{"ok":true}')


@pytest.mark.parametrize(
    ("request_line", "status"),
    [(b"FOO /healthz HTTP/1.1", 400), (b"PROPFIND /healthz HTTP/1.1", 405),
     (b"DELETE /v1/scripts/alpha/functions/f HTTP/1.1", 405), (b"GET /nowhere HTTP/1.1", 404)],
)  # fmt: skip
def test_unknown_and_other_methods(front: Servers, request_line: bytes, status: int) -> None:
    replies, _ = exchange(front.front_port, request_line + b"\r\nHost: x\r\n\r\n", [False])
    assert replies[0].status == status
    assert replies[0].headers["content-type"] == "application/json"


def test_a_malformed_request_is_answered_after_the_good_ones_then_closes(front: Servers) -> None:
    with connect(front) as sock:
        sock.sendall(call(b"{}") + b"GET / HTTP/1.1\r\nBad Header\r\n\r\n" + call(b"{}"))
        data, _ = read_until_closed(sock)
    answers = data.split(b"HTTP/1.1 ")[1:]
    assert [a[:3] for a in answers] == [b"200", b"400"]
    assert b"malformed HTTP request" in answers[1]


def test_a_client_that_does_not_read_cannot_pile_up_answers(front: Servers) -> None:
    # 200 pipelined calls at once: reading stops past max_pipeline and resumes as the
    # answers go out; every answer arrives, in order.
    raw = b"".join(call(b'{"i": %d}' % i) for i in range(200))
    replies, _ = exchange(front.front_port, raw, [False] * 200, timeout=20)
    assert [orjson.loads(r.body)["result"]["i"] for r in replies] == list(range(200))


def test_uploads_stream_through_to_aiohttp(front: Servers) -> None:
    body = (bytes(range(256)) * 40)[:10000]  # sent in pieces, chunked
    pieces = b"".join(b"%x\r\n%s\r\n" % (1000, body[i : i + 1000]) for i in range(0, 10000, 1000))
    raw = (
        call(b'{"n": 1}')
        + b"PUT /v1/uploads/notes.bin HTTP/1.1\r\nHost: x\r\n" + AUTH
        + b"Transfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n"
        + pieces + b"0\r\n\r\n"
    )  # fmt: skip
    replies, closed = exchange(front.front_port, raw, [False, False], chunks=7, wait_close=True)
    assert [r.status for r in replies] == [200, 201], replies
    assert orjson.loads(replies[1].body)["size"] == len(body) and closed
    assert (front.folders[1] / "notes.bin").read_bytes() == body


def test_uploads_keep_aiohttp_limits_and_key_checks(front: Servers) -> None:
    put = b"PUT /v1/uploads/big.bin HTTP/1.1\r\nHost: x\r\nContent-Length: 30000\r\n"
    replies, _ = exchange(front.front_port, put + AUTH + b"\r\n" + b"z" * 30000, [False])
    assert replies[0].status == 413
    replies, _ = exchange(front.front_port, put + b"\r\n" + b"z" * 30000, [False])
    assert replies[0].status == 401
    assert not (front.folders[1] / "big.bin").exists()

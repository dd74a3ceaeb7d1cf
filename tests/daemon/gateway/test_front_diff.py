"""The lean front against the aiohttp gateway: hypothesis writes requests, well-formed
and malformed, and both servers must answer alike.

Compared: the status of every answer; the body and the headers (but Date, Server and
the value of X-Scriptd-Execution-Id, which is unique per call) wherever aiohttp's
answer is its gateway's JSON. For a request aiohttp's parser refuses it answers a
text/plain 400 naming its own parser's reason; the front answers 400 too, with a
JSON `bad_request` error, so there the body is only checked to be that."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

import orjson
import pytest
from aiohttp.test_utils import make_mocked_request
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from daemon.gateway.app import Gateway
from daemon.gateway.calls import FrontCalls
from daemon.gateway.front_types import Request
from tests.daemon.gateway.front_harness import (
    MAX_BODY,
    STEP_KEY,
    UPLOAD_MAX,
    Reply,
    Servers,
    exchange,
    servers,
)
from tests.daemon.gateway.test_app import KEY_A, KEY_B

SKIPPED_HEADERS = {"date", "server", "connection", "keep-alive"}


@pytest.fixture(scope="module")
def both() -> Iterator[Servers]:
    with servers() as s:
        yield s


SCRIPTS = ["alpha", "beta", "gamma", "nosuch", "al%70ha", "a%2Fb", "a{b", "", "%C3%A9t%C3%A9"]
STEPS = ["delta", "delta", "delta", "del%74a", "alpha", "nosuch", "gamma", "a{b", ""]
FUNCTIONS = ["f", "nosuch", "_x", "f%2Fg", "", "f%25"]
AUTH = [
    None,
    f"Bearer {KEY_A.key}",
    f"Bearer {KEY_B.key}",
    "Bearer sk_" + "Z" * 12 + "_" + "b" * 43,
    "Bearer nope",
    "Basic dXNlcjpwYXNz",
    "bearer " + KEY_A.key,
    f"Bearer {STEP_KEY.key}",
    f"Bearer {STEP_KEY.key}",
]
BODIES = [b"{}", b'{"a": 1}', b"[1]", b"nope", b"", b"null", b'{"x": "' + b"a" * MAX_BODY + b'"}',
          b"u" * (UPLOAD_MAX + 1)]  # fmt: skip
# A code step's bodies ("delta": test_app's FakeDispatcher.run gives its inputs back).
STEP_BODIES = [b'{"inputs": {"x": {"s": "Ada"}}}', b'{"inputs": {"x": {"s": "sekrit"}}}',
               b'{"inputs": {"n": {"n": 1.50}, "e": {"n": 1e400}}}', b'{"inputs": null}',
               b'{"inputs": {"raise": {"s": "a"}}}', b'{"inputs": {"queue": {"b": true}}}',
               b'{"inputs": {"oom": {"b": true}}}', b'{"inputs": 1}', b'{"other": 1}',
               b'{"inputs": {"x": NaN}}', b"{}", b"[]", b"nope", b""]  # fmt: skip
STEP_QUERIES = ["?details=1", "?details=0", "?details=yes&details=0", "?details=%31",
                "?x=1&details=true", "#?details=1", "?details=true#x", "?details"]  # fmt: skip


@st.composite
def paths(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["call", "call", "call", "healthz", "other", "absolute", "upload",
                                 "step", "step", "step"]))  # fmt: skip
    if kind == "step":
        path = f"/v1/scripts/{draw(st.sampled_from(STEPS))}/run"
        if draw(st.booleans()):
            path += draw(st.sampled_from(STEP_QUERIES))
        if draw(st.booleans()):
            path = "http://example.com" + path
        return path
    if kind == "upload":
        name = draw(st.sampled_from(["a.txt", "b.bin", ".hidden", "a..b", "%2e%2e", "x%2Fy"]))
        path = "/v1/%75ploads/" + name if draw(st.booleans()) else "/v1/uploads/" + name
    elif kind == "healthz":
        path = "/healthz"
    elif kind == "other":
        path = draw(st.sampled_from(["/", "/nowhere", "/v1/scripts/", "/v1", "/v1/uploads/",
                                     "/healthz/", "/v1/scripts/alpha/functions/f/x",
                                     "/v1/scripts/delta/run/x", "/v1/scripts/delta/functions/f",
                                     "/v1/scripts/delta/runs"]))  # fmt: skip
    else:
        script, function = draw(st.sampled_from(SCRIPTS)), draw(st.sampled_from(FUNCTIONS))
        path = f"/v1/scripts/{script}/functions/{function}"
    if draw(st.booleans()):
        path += draw(st.sampled_from(["?x=1", "?", "#frag", "?a=%20#b"]))
    if kind == "absolute":
        path = "http://example.com" + path
    return path


@st.composite
def requests(draw: st.DrawFn) -> tuple[bytes, bool]:
    """One request as raw bytes, and whether it is HEAD."""
    method = draw(st.sampled_from(["POST"] * 6 + ["GET", "HEAD", "PUT", "DELETE", "OPTIONS",
                                                  "PATCH", "PROPFIND"]))  # fmt: skip
    version = draw(st.sampled_from(["HTTP/1.1"] * 4 + ["HTTP/1.0"]))
    headers: list[tuple[str, str]] = []
    if version == "HTTP/1.1" or draw(st.booleans()):
        headers.append(("Host", "example.com"))
    auth = draw(st.sampled_from(AUTH))
    if auth is not None:
        headers.append((draw(st.sampled_from(["Authorization", "authorization"])), auth))
    if draw(st.booleans()):
        headers.append(("Content-Type", "application/json"))
    path = draw(paths())
    bodies = STEP_BODIES if path.split("?")[0].split("#")[0].endswith("/run") else BODIES
    body = draw(st.sampled_from(bodies)) if method != "HEAD" else b""
    framing = draw(st.sampled_from(["length", "length", "chunked", "none"]))
    if method in ("GET", "HEAD") and not body:
        framing = "none"
    if framing == "chunked" and version == "HTTP/1.1":
        headers.append(("Transfer-Encoding", "chunked"))
        size = draw(st.integers(1, 64))
        pieces = [body[i : i + size] for i in range(0, len(body), size)]
        payload = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
    elif framing == "none":
        payload = b""
    else:
        headers.append(("Content-Length", str(len(body))))
        payload = body
    if draw(st.booleans()) and payload:
        headers.append(("Expect", "100-continue"))
    head = f"{method} {path} {version}\r\n" + "".join(f"{n}: {v}\r\n" for n, v in headers)
    return head.encode() + b"\r\n" + payload, method == "HEAD"


def with_headers(raw: bytes, extra: bytes) -> bytes:
    """`raw` with header lines added at the end of its head."""
    return raw.replace(b"\r\n\r\n", b"\r\n" + extra + b"\r\n", 1)


MANY = b"".join(b"X-%d: 1\r\n" % i for i in range(130))
MALFORMATIONS = [
    ("method", lambda raw: b"FOO" + raw[raw.index(b" ") :]),
    ("space in a header name", lambda raw: raw.replace(b"\r\nHost:", b"\r\nHost :", 1)),
    ("nul in a header value", lambda raw: raw.replace(b"example.com", b"exa\x00mple", 1)),
    ("two lengths", lambda raw: with_headers(raw, b"Content-Length: 0\r\nContent-Length: 1\r\n")),
    (
        "length and chunked",
        lambda raw: with_headers(raw, b"Content-Length: 2\r\nTransfer-Encoding: chunked\r\n"),
    ),
    ("bad length", lambda raw: with_headers(raw, b"Content-Length: 1x\r\n")),
    ("bare LF", lambda raw: raw.replace(b"\r\n", b"\n", 1)),
    ("folded header", lambda raw: raw.replace(b"\r\nHost: example.com", b"\r\nX-A: b\r\n c", 1)),
    ("no host", lambda raw: raw.replace(b"Host: example.com\r\n", b"", 1)),
    ("long header", lambda raw: with_headers(raw, b"X-Long: " + b"a" * 9000 + b"\r\n")),
    ("many headers", lambda raw: with_headers(raw, MANY)),
    ("garbage line", lambda raw: b"hello world\r\n\r\n"),
]


def is_gateway_json(reply: Reply) -> bool:
    return reply.headers.get("content-type") == "application/json"


def assert_alike(expected: Reply, got: Reply, raw: bytes) -> None:
    assert got.status == expected.status, (raw[:300], expected, got)
    if not is_gateway_json(expected):
        assert expected.status == 400, (raw[:300], expected)
        assert orjson.loads(got.body)["error"]["type"] == "bad_request", got
        return
    skip = SKIPPED_HEADERS
    want = {k: v for k, v in expected.headers.items() if k not in skip}
    have = {k: v for k, v in got.headers.items() if k not in skip}
    body = got.body
    if "x-scriptd-execution-id" in want:
        assert "x-scriptd-execution-id" in have, (raw[:300], got)
        # A code step's answer names its execution id: each server has its own.
        body = body.replace(have["x-scriptd-execution-id"].encode(),
                            want["x-scriptd-execution-id"].encode())  # fmt: skip
        want["x-scriptd-execution-id"] = have["x-scriptd-execution-id"]
    assert _timeless(body) == _timeless(expected.body), (raw[:300], expected, got)
    assert have == want, (raw[:300], expected, got)


def _timeless(body: bytes) -> bytes:
    """An upload's answer without its modified_at: each server wrote its own file."""
    if b'"modified_at":' not in body:
        return body
    doc = orjson.loads(body)
    doc.pop("modified_at", None)
    return orjson.dumps(doc)


def compare(both: Servers, raw: bytes, heads: list[bool]) -> None:
    expected, _ = exchange(both.aiohttp_port, raw, heads)
    got, _ = exchange(both.front_port, raw, heads)
    assert len(got) == len(expected), (raw[:300], expected, got)
    for want, have in zip(expected, got, strict=True):
        assert_alike(want, have, raw)


COMMON = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@COMMON
@given(request=requests())
def test_one_request_is_answered_alike(both: Servers, request: tuple[bytes, bool]) -> None:
    raw, head = request
    compare(both, raw, [head])


@COMMON
@given(request=requests(), malformation=st.sampled_from(MALFORMATIONS))
def test_malformed_requests_are_refused_alike(
    both: Servers, request: tuple[bytes, bool], malformation: tuple[str, object]
) -> None:
    raw, head = request
    assume(not head)  # the answer to a refused HEAD is a whole one: no way to tell here
    _, corrupt = malformation
    compare(both, corrupt(raw), [head])  # type: ignore[operator]


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(batch=st.lists(requests(), min_size=2, max_size=5))
def test_pipelined_requests_are_answered_alike(
    both: Servers, batch: list[tuple[bytes, bool]]
) -> None:
    # HEAD last only: a raw client cannot tell where a HEAD answer ends otherwise.
    # HTTP/1.0 (it closes) last only too: aiohttp answers a whole read that holds
    # data after such a request with one 400, the front answers up to it and closes.
    def last(r: tuple[bytes, bool]) -> bool:
        return r[1] or b" HTTP/1.0\r\n" in r[0].split(b"\r\n\r\n", 1)[0] + b"\r\n"

    batch = [r for r in batch if not last(r)] + [r for r in batch if last(r)][:1]
    raw = b"".join(r for r, _ in batch)
    heads = [h for _, h in batch]
    expected, _ = exchange(both.aiohttp_port, raw, heads)
    got, _ = exchange(both.front_port, raw, heads)
    # A body over the limit is not read: the front answers it and closes, where aiohttp
    # may read it to its end and go on. A request the front hands to aiohttp (uploads)
    # ends the connection after its answer too.
    big = [i for i, (r, _) in enumerate(batch) if len(r) > MAX_BODY or b"ploads/" in r[:40]]
    if big:
        expected = expected[: big[0] + 1]
    assert len(got) == len(expected), (raw[:300], expected, got)
    for want, have in zip(expected, got, strict=True):
        assert_alike(want, have, raw)


RUN = "/v1/scripts/delta/run"
RECORDED = [
    (RUN + "?details=1", b'{"inputs": {"x": {"s": "sekrit"}}}'),
    (RUN, b'{"inputs": {"n": {"n": 1.50}, "w": {"n": 123456789012345678901234567890}}}'),
    (RUN + "?details=yes", b'{"inputs": {"raise": {"s": "sekrit"}}}'),
    (RUN, b'{"inputs": {"oom": {"b": true}}}'),
    (RUN, b'{"inputs": {"queue": {"b": true}}}'),
    (RUN, b'{"inputs": 1}'),
    (RUN, b'{"x": "' + b"a" * MAX_BODY + b'"}'),
    ("/v1/scripts/alpha/functions/f", b'{"a": 1}'),
]


@pytest.mark.parametrize(("path", "body"), RECORDED)
def test_a_call_is_recorded_alike(both: Servers, path: str, body: bytes) -> None:
    """The execution record of a step's run or a function's call (secrets masked,
    details, HTTP log) and the killed worker's connections closed: the same from both
    servers."""
    key = STEP_KEY.key if path.startswith(RUN) else KEY_A.key
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
    head += f"Content-Length: {len(body)}\r\n\r\n"
    records, closed = [], []
    for port, gateway, egress in zip(
        (both.aiohttp_port, both.front_port), both.gateways, both.egresses, strict=True
    ):
        before = len(egress.closed)
        (reply,), _ = exchange(port, head.encode() + body, [False])
        call = gateway.recorder._buffer[-1]
        assert call.id == reply.headers["x-scriptd-execution-id"]
        assert call.values is not None
        records.append(call.values._replace(id="", received_at=0, started_at=0, ended_at=0))
        closed.append(egress.closed[before:])
    if len(body) <= MAX_BODY:  # the front's own answer: a bridged one ends the connection
        assert "connection" not in reply.headers, reply
    assert records[1] == records[0]
    assert closed[1] == closed[0] == (["r"] if b"oom" in body else [])
    if reply.status in (200, 422):  # a worker ran it: its outbound HTTP is recorded
        assert records[0].http_log is not None
    if path.startswith(RUN):  # "delta" holds the secret
        assert "sekrit" not in repr(records[0])


HOPS = ["203.0.113.7", "10.9.0.1", "127.0.0.1", "::1", "2001:db8::5", "junk", " ", "",
        "198.51.100.20", "::ffff:10.9.0.3"]  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(
    peer=st.sampled_from(["127.0.0.1", "10.9.0.2", "203.0.113.9", "::1"]),
    values=st.lists(st.lists(st.sampled_from(HOPS), max_size=4).map(", ".join), max_size=3),
)
def test_the_throttled_client_behind_proxies_is_the_same(peer: str, values: list[str]) -> None:
    nets = tuple(ipaddress.ip_network(n) for n in ("127.0.0.0/8", "10.9.0.0/16", "::1/128"))
    gateway = Gateway(None, None, None, None, 4096, nets)  # type: ignore[arg-type]
    headers = CIMultiDict([("Host", "x"), *(("X-Forwarded-For", v) for v in values)])
    reference = make_mocked_request("POST", "/", headers=headers)
    reference = reference.clone(remote=peer)
    lean = Request(peer)
    lean.headers = [(b"X-Forwarded-For", v.encode()) for v in values]
    assert FrontCalls.client(_Calls(gateway), lean) == gateway.client(reference)


class _Calls:
    """What FrontCalls.client reads of itself."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

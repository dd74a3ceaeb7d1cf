"""Relaying HTTP/1.1 requests, one at a time per client connection, to upstream
connections the `Upstreams` hands out (checked by the policy before they exist).
Each request is logged, and refused ones get the proxy's own 403 whose body names
the rule. Used for plain HTTP through the proxy and for HTTPS once intercepted."""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import h11

from daemon.egress.accounting import ReplicaAccount
from daemon.egress.httplog import RequestEntry, RequestLog
from daemon.egress.peer import HttpPeer
from daemon.egress.policy import EgressRefused
from daemon.egress.resolver import ResolveError
from daemon.egress.upstream import UpstreamError

# Hop-by-hop headers (RFC 9110 7.6.1) and the proxy's own: never forwarded. Expect is
# answered by the proxy itself (100 Continue) rather than passed on.
_REQUEST_DROPPED = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authorization",
        b"te",
        b"upgrade",
        b"expect",
        b"trailer",
    }
)
_RESPONSE_DROPPED = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"upgrade",
        b"trailer",
    }
)
# A refused request's body is read and dropped up to this size to keep the connection;
# past it the connection is closed instead.
_DRAIN_LIMIT = 1024 * 1024


class BadRequest(Exception):
    pass


@dataclass(frozen=True)
class RequestTarget:
    host: str
    port: int
    url: str  # as logged
    path: bytes  # as sent upstream (origin-form)
    set_host: bytes | None  # Host header to send, None to keep the client's


class Upstreams(Protocol):
    async def get(self, host: str, port: int) -> HttpPeer: ...
    def release(self, host: str, port: int, peer: HttpPeer) -> None: ...
    def close_all(self) -> None: ...


TargetOf = Callable[[h11.Request], RequestTarget]


def absolute_target(request: h11.Request) -> RequestTarget:
    """A plain-HTTP proxy request: the target is an absolute http:// URL."""
    url = request.target.decode("ascii", "replace")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise BadRequest(
            f"egress: the proxy takes absolute http:// URLs (https goes through CONNECT),"
            f" not {url[:200]!r}"
        )
    try:
        port = parts.port or 80
    except ValueError:
        raise BadRequest(f"egress: bad port in {url[:200]!r}") from None
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return RequestTarget(parts.hostname, port, url, path.encode(), parts.netloc.encode())


def tunnel_target(host: str, port: int) -> TargetOf:
    """Requests inside an intercepted CONNECT: origin-form, to the tunnel's host."""
    shown = host if ":" not in host else f"[{host}]"
    base = f"https://{shown}" + ("" if port == 443 else f":{port}")

    def target_of(request: h11.Request) -> RequestTarget:
        path = request.target
        if not path.startswith(b"/"):
            raise BadRequest("egress: requests inside a tunnel must use a /path target")
        return RequestTarget(host, port, base + path.decode("ascii", "replace"), path, None)

    return target_of


class Relay:
    """Relays the requests of one client connection."""

    def __init__(
        self,
        client: HttpPeer,
        target_of: TargetOf,
        upstreams: Upstreams,
        log: Callable[[], RequestLog],
        account: ReplicaAccount,
    ) -> None:
        self.client = client
        self.target_of = target_of
        self.upstreams = upstreams
        self.log = log
        self.account = account

    async def handle(self, request: h11.Request) -> bool:
        """Relay one request; True when the client connection can take another."""
        try:
            target = self.target_of(request)
        except BadRequest as err:
            return await self._answer_and_drain(400, str(err))
        method = request.method.decode("ascii", "replace")
        try:
            upstream = await self.upstreams.get(target.host, target.port)
        except EgressRefused as refusal:
            self.log().refused(method, target.url, refusal.rule, str(refusal))
            return await self._answer_and_drain(403, str(refusal))
        except (ResolveError, UpstreamError) as err:
            entry = self.log().begin_request(method, target.url, list(request.headers))
            if entry is not None:
                entry.error = str(err)
            return await self._answer_and_drain(502, str(err))
        return await self._exchange(request, method, target, upstream)

    async def _exchange(
        self, request: h11.Request, method: str, target: RequestTarget, upstream: HttpPeer
    ) -> bool:
        log = self.log()
        started = time.perf_counter()
        entry = log.begin_request(method, target.url, list(request.headers))
        sent0, received0 = upstream.sent, upstream.received
        try:
            upstream.send(
                h11.Request(
                    method=request.method,
                    target=target.path,
                    headers=_forward_headers(request.headers, target.set_host),
                )
            )
            await self._pump_request_body(upstream, entry, log)
            await self._relay_response(upstream, entry)
        except (OSError, h11.ProtocolError, UpstreamError) as err:
            upstream.close()
            self.upstreams.release(target.host, target.port, upstream)
            return await self._fail(entry, err)
        finally:
            sent, received = upstream.sent - sent0, upstream.received - received0
            self.account.count(sent, received)
            log.count_bytes(sent, received)
            if entry is not None:
                entry.duration_ms = round((time.perf_counter() - started) * 1000, 3)
                entry.bytes_out, entry.bytes_in = sent, received
        self.upstreams.release(target.host, target.port, upstream)
        return self.client.reusable

    async def _pump_request_body(
        self, upstream: HttpPeer, entry: RequestEntry | None, log: RequestLog
    ) -> None:
        if self.client.conn.they_are_waiting_for_100_continue:
            self.client.send(h11.InformationalResponse(status_code=100, headers=[]))
            await self.client.flush()
        capture, captured, total = log.body_capture, bytearray(), 0
        while True:
            event = await self.client.next_event(flush_first=upstream)
            if isinstance(event, h11.Data):
                total += len(event.data)
                if len(captured) < capture:
                    captured += event.data[: capture - len(captured)]
                upstream.send(h11.Data(data=event.data))
            elif isinstance(event, h11.EndOfMessage):
                upstream.send(h11.EndOfMessage())
                break
            else:
                raise OSError("the script closed the connection in the middle of a request")
        if entry is not None:
            log.record_body(entry, bytes(captured), total)

    async def _relay_response(self, upstream: HttpPeer, entry: RequestEntry | None) -> None:
        response = await self._next_response(upstream)
        if entry is not None:
            entry.status = response.status_code
            entry.response_headers = self.log().redactor.headers(list(response.headers))
        self.client.send(
            h11.Response(
                status_code=response.status_code,
                headers=[(k, v) for k, v in response.headers if k not in _RESPONSE_DROPPED],
                reason=response.reason,
            )
        )
        while True:
            event = await upstream.next_event(flush_first=self.client)
            if isinstance(event, h11.Data):
                self.client.send(h11.Data(data=event.data))
            elif isinstance(event, h11.EndOfMessage):
                self.client.send(h11.EndOfMessage())
                await self.client.flush()
                return
            else:
                raise UpstreamError("egress: the server closed the connection mid-response")

    async def _next_response(self, upstream: HttpPeer) -> h11.Response:
        while True:
            event = await upstream.next_event(flush_first=self.client)
            if isinstance(event, h11.Response):
                return event
            if isinstance(event, h11.InformationalResponse):
                continue
            raise UpstreamError("egress: the server closed the connection without answering")

    async def _fail(self, entry: RequestEntry | None, err: Exception) -> bool:
        message = str(err) if isinstance(err, UpstreamError) else f"egress: upstream error: {err}"
        if entry is not None:
            entry.error = message
        if self.client.conn.our_state is not h11.SEND_RESPONSE:
            return False  # the response had begun: only closing can tell the client
        return await self._answer_and_drain(502, message)

    async def _answer_and_drain(self, status: int, message: str) -> bool:
        await answer(self.client, status, message)
        return await _drain(self.client)


async def answer(peer: HttpPeer, status: int, message: str) -> None:
    body = (message + "\n").encode()
    peer.send(
        h11.Response(
            status_code=status,
            headers=[
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                (b"x-scriptd-egress", b"refused" if status == 403 else b"error"),
            ],
        )
    )
    peer.send(h11.Data(data=body))
    peer.send(h11.EndOfMessage())
    await peer.flush()


async def _drain(peer: HttpPeer) -> bool:
    """Read the rest of a request that was answered without being relayed."""
    drained = 0
    while peer.conn.their_state is h11.SEND_BODY:
        event = await peer.next_event()
        if isinstance(event, h11.Data):
            drained += len(event.data)
            if drained > _DRAIN_LIMIT:
                return False
        elif not isinstance(event, h11.EndOfMessage):
            return False
    return peer.reusable


def _forward_headers(headers: Any, set_host: bytes | None) -> list[tuple[bytes, bytes]]:
    out = [(k, v) for k, v in headers if k not in _REQUEST_DROPPED]
    if set_host is not None:
        out = [(k, v) for k, v in out if k != b"host"]
        out.insert(0, (b"host", set_host))
    return out

"""Relaying HTTP/1.1 requests, one at a time per client connection, to upstream
connections that the `Upstreams` hands out (checked by the policy before they exist).
Each request is logged, and a refused one gets the proxy's own 403 whose body names
the rule. Used for plain HTTP through the proxy and for HTTPS once intercepted."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from daemon.egress.accounting import ReplicaAccount
from daemon.egress.framing import BodyWriter, response_head
from daemon.egress.httplog import RequestEntry, RequestLog
from daemon.egress.messages import BODYLESS, END, Head, ProtocolError
from daemon.egress.policy import EgressRefused
from daemon.egress.resolver import ResolveError
from daemon.egress.targets import BadRequest, RequestTarget, TargetOf
from daemon.egress.upstream import UpstreamError
from daemon.egress.wire import HttpSide

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
# The usual methods as text, for the log, without decoding each request's.
_METHODS = {m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")}
# Requests sent again on a new connection when a reused one failed them unanswered.
_RETRIED = frozenset({b"GET", b"HEAD", b"OPTIONS"})
# Status lines already formatted, by (status, reason) as servers send them.
_STATUS_LINES: dict[tuple[int, bytes], bytes] = {}
_STATUS_LINES_KEPT = 256
# A refused request's body is read and dropped up to this size to keep the connection;
# past it the connection is closed instead.
_DRAIN_LIMIT = 1024 * 1024


def method_text(method: bytes) -> str:
    return _METHODS.get(method) or method.decode("ascii", "replace")


class Exchange:
    """One request relayed upstream, until its response has been relayed back."""

    __slots__ = ("entry", "log", "received0", "request", "sent0", "started", "target", "upstream")

    def __init__(
        self,
        request: Head,
        target: RequestTarget,
        upstream: HttpSide,
        log: RequestLog,
        entry: RequestEntry | None,
    ) -> None:
        self.request = request
        self.target = target
        self.upstream = upstream
        self.log = log
        self.entry = entry
        self.started = time.perf_counter()
        self.sent0, self.received0 = upstream.sent, upstream.received


class Upstreams(Protocol):
    def idle(self, target: RequestTarget) -> HttpSide | None: ...
    async def get(self, target: RequestTarget) -> HttpSide: ...
    async def reopen(self, target: RequestTarget) -> HttpSide: ...
    def release(self, target: RequestTarget, side: HttpSide, reusable: bool) -> None: ...


class Relay:
    """Relays the requests of one client connection."""

    def __init__(
        self,
        client: HttpSide,
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

    async def handle(self, request: Head) -> bool:
        """Relay one request; True when the client connection can take another."""
        if request.upgrade:
            return await self._refuse(request, 501, "egress: protocol upgrades are not relayed")
        try:
            target = self.target_of(request)
        except BadRequest as bad:
            return await self._refuse(request, 400, str(bad))
        method = method_text(request.method)
        try:
            # a kept-alive connection needs no coroutine
            upstream = self.upstreams.idle(target) or await self.upstreams.get(target)
        except EgressRefused as refusal:
            self.log().refused(method, target.url, refusal.rule, str(refusal))
            return await self._refuse(request, 403, str(refusal))
        except (ResolveError, UpstreamError) as err:
            entry = self.log().begin_request(method, target.url, request.headers)
            if entry is not None:
                entry.error = str(err)
            return await self._refuse(request, 502, str(err))
        return await self._exchange(request, method, target, upstream)

    async def _exchange(
        self, request: Head, method: str, target: RequestTarget, upstream: HttpSide
    ) -> bool:
        exchange = self._begin(request, method, target, upstream)
        try:
            upstream.write(forwarded_head(request, target))
            if request.has_body or self.client.take() is not END:
                await self._pump_request_body(request, upstream, exchange.entry, exchange.log)
            upstream.expect_response(request.method == b"HEAD")
        except (OSError, ProtocolError, UpstreamError) as err:
            upstream.close()
            try:
                return await self._fail(request, exchange.entry, err)
            finally:
                self._finish(exchange, False)
        return await self._respond(exchange)

    def _begin(
        self, request: Head, method: str, target: RequestTarget, upstream: HttpSide
    ) -> Exchange:
        log = self.log()
        entry = log.begin_request(method, target.url, request.headers)
        return Exchange(request, target, upstream, log, entry)

    async def _respond(self, exchange: Exchange) -> bool:
        """Wait for the response to a request sent upstream and relay it; True when
        the client connection can take another request."""
        request = exchange.request
        reusable = False
        responded = False
        try:
            while True:
                upstream = exchange.upstream
                try:
                    response = await self._next_response(upstream)
                    responded = True
                    head_only = request.method == b"HEAD"
                    reusable = await self._relay_response(
                        upstream, response, exchange.entry, exchange.log, head_only
                    )
                    break
                except (OSError, ProtocolError, UpstreamError) as err:
                    upstream.close()
                    if responded:
                        return False  # the response had begun: only closing tells the client
                    if not await self._retried(exchange):
                        return await self._fail(request, exchange.entry, err)
        finally:
            self._finish(exchange, reusable)
        return request.keep_alive

    async def _retried(self, exchange: Exchange) -> bool:
        """Send the request once more on a new connection to the same place when the
        connection that failed it had been kept idle (its server may have closed it
        meanwhile), nothing of an answer came, and repeating it is safe (RFC 9112
        9.3.1: GET, HEAD or OPTIONS without a body). Its bytes on both connections
        count for the one exchange."""
        failed, request = exchange.upstream, exchange.request
        if (
            not failed.reused
            or failed.received != exchange.received0
            or request.method not in _RETRIED
            or request.has_body
        ):
            return False
        try:
            fresh = await self.upstreams.reopen(exchange.target)
        except (EgressRefused, ResolveError, UpstreamError):
            return False
        exchange.sent0 = fresh.sent - (failed.sent - exchange.sent0)
        exchange.received0 = fresh.received
        exchange.upstream = fresh
        fresh.write(forwarded_head(request, exchange.target))
        fresh.expect_response(request.method == b"HEAD")
        return True

    def _finish(self, exchange: Exchange, reusable: bool) -> None:
        """The upstream connection back (or closed), and the exchange counted and logged."""
        upstream = exchange.upstream
        self.upstreams.release(exchange.target, upstream, reusable)
        sent, received = upstream.sent - exchange.sent0, upstream.received - exchange.received0
        self.account.count(sent, received)
        exchange.log.count_bytes(sent, received)
        entry = exchange.entry
        if entry is not None:
            # to the microsecond; round(x, 3) goes through a decimal string
            entry.duration_ms = int((time.perf_counter() - exchange.started) * 1e6 + 0.5) / 1000
            entry.bytes_out, entry.bytes_in = sent, received

    async def _pump_request_body(
        self, request: Head, upstream: HttpSide, entry: RequestEntry | None, log: RequestLog
    ) -> None:
        if not request.has_body:  # the END of a bodiless request, still to come
            await self.client.next_event()
            return
        if (request.header(b"expect") or b"").lower() == b"100-continue":
            self.client.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            await self.client.flush()
        body = BodyWriter(upstream, request.chunked)
        capture, captured, total = log.body_capture, bytearray(), 0
        while True:
            event = await self.client.next_event(flush_first=upstream)
            if isinstance(event, bytes):
                total += len(event)
                if len(captured) < capture:
                    captured += event[: capture - len(captured)]
                body.data(event)
            elif event is END:
                body.end()
                break
            else:
                raise OSError("the script closed the connection in the middle of a request")
        if entry is not None:
            log.record_body(entry, bytes(captured), total)

    async def _next_response(self, upstream: HttpSide) -> Head:
        while True:
            event = upstream.take() or await upstream.next_event(flush_first=self.client)
            if isinstance(event, Head) and event.status >= 200:
                return event
            if not (isinstance(event, Head) or event is END):  # 1xx heads and their END
                raise UpstreamError("egress: the server closed the connection without answering")

    async def _relay_response(
        self,
        upstream: HttpSide,
        response: Head,
        entry: RequestEntry | None,
        log: RequestLog,
        head_only: bool,
    ) -> bool:
        """Relay the response; True when the upstream connection can be used again."""
        client = self.client
        if entry is not None:
            entry.status = response.status
            entry.response_headers = response.headers
        bodiless = head_only or response.status in BODYLESS
        until_close = not bodiless and not response.chunked and response.length is None
        client.write(relayed_head(response, until_close))
        # a body under Content-Length goes as it came; only the others are re-chunked
        rechunked = BodyWriter(client, True) if response.chunked or until_close else None
        while True:
            # (take() gives None when nothing is queued; an empty chunk, also falsy,
            # has nothing to relay)
            event = upstream.take() or await upstream.next_event(flush_first=client)
            if type(event) is bytes:
                if rechunked is None:
                    client.write(event)
                else:
                    rechunked.data(event)
            elif event is END:
                break
            else:
                raise UpstreamError("egress: the server closed the connection mid-response")
        if rechunked is not None:
            rechunked.end()
        await client.flush()
        return response.keep_alive and not upstream.at_eof

    async def _fail(self, request: Head, entry: RequestEntry | None, err: Exception) -> bool:
        message = str(err) if isinstance(err, UpstreamError) else f"egress: upstream error: {err}"
        if entry is not None:
            entry.error = message
        return await self._refuse(request, 502, message)

    async def _refuse(self, request: Head, status: int, message: str) -> bool:
        await answer(self.client, status, message)
        if request.upgrade:
            return False
        return await _drain(self.client) and request.keep_alive


async def answer(side: HttpSide, status: int, message: str) -> None:
    """The proxy's own answer (a refusal or an error), as plain text."""
    body = (message + "\n").encode()
    reasons = {
        400: b"Bad Request",
        403: b"Forbidden",
        501: b"Not Implemented",
        502: b"Bad Gateway",
        503: b"Service Unavailable",
    }
    headers = [
        (b"Content-Type", b"text/plain; charset=utf-8"),
        (b"Content-Length", b"%d" % len(body)),
        (b"X-Scriptd-Egress", b"refused" if status == 403 else b"error"),
    ]
    side.write(response_head(status, reasons.get(status, b"Error"), headers) + body)
    await side.flush()


async def _drain(side: HttpSide) -> bool:
    """Read the rest of a request that was answered without being relayed."""
    drained = 0
    while True:
        event = await side.next_event()
        if event is END:
            return True
        if not isinstance(event, bytes):
            return False
        drained += len(event)
        if drained > _DRAIN_LIMIT:
            return False


def forwarded_head(request: Head, target: RequestTarget) -> bytes:
    """The request head as sent upstream: origin-form target, hop-by-hop headers
    dropped, Host set for an absolute URL. One pass over the headers (this runs for
    every request)."""
    lines = [request.method + b" " + target.path + b" HTTP/1.1"]
    set_host = target.set_host
    if set_host is not None:
        lines.append(b"Host: " + set_host)
    for name, value in request.headers:
        lowered = name.lower()
        if lowered not in _REQUEST_DROPPED and (set_host is None or lowered != b"host"):
            lines.append(name + b": " + value)
    lines.append(b"\r\n")
    return b"\r\n".join(lines)


def _status_line(status: int, reason: bytes) -> bytes:
    """`HTTP/1.1 200 OK`: the few a server sends are formatted once."""
    key = (status, reason)
    line = _STATUS_LINES.get(key)
    if line is None:
        line = b"HTTP/1.1 %d %s" % (status, reason or b"-")
        if len(_STATUS_LINES) < _STATUS_LINES_KEPT:
            _STATUS_LINES[key] = line
    return line


def relayed_head(response: Head, until_close: bool) -> bytes:
    """The response head as sent to the script: hop-by-hop headers dropped, and a
    body framed by the server's closing re-chunked (the client's connection stays)."""
    lines = [_status_line(response.status, response.reason)]
    for name, value in response.headers:
        if name.lower() not in _RESPONSE_DROPPED:
            lines.append(name + b": " + value)
    if until_close:
        lines.append(b"Transfer-Encoding: chunked")
    lines.append(b"\r\n")
    return b"\r\n".join(lines)

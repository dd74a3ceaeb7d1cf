"""A lean HTTP/1.1 server for the gateway's call routes: an asyncio Protocol on the
loop (uvloop in the daemon) with httptools, the llhttp parser.

Why not aiohttp here: aiohttp builds a request, a header multidict, a URL, a match
info and a response object per request; on the call path those cost more CPU than
everything else the daemon does (README, "The gateway's front"). This module does
only what HTTP/1.1 needs, and hands each complete request to `App.handle`.

What it does for every connection:
- keep-alive (HTTP/1.1 by default, HTTP/1.0 with `Connection: keep-alive`);
- pipelining: requests are parsed as they arrive and answered strictly in order
  (a `Slot` per request; a later answer waits for the earlier ones);
- bodies by Content-Length or chunked (llhttp de-chunks); `Expect: 100-continue`
  gets `100 Continue` once its request is next to be answered and wants the body;
- limits: request line and each header line at most `max_line_bytes`, at most
  `max_headers` headers, the whole head at most `max_head_bytes`; a body past the
  app's limit is not kept (the app answers 413) and the connection closes after;
- slow clients: the head must arrive within `header_timeout_s` of its first byte,
  the body within `body_timeout_s` of the head, and an idle keep-alive connection is
  closed after `idle_timeout_s`; one sweep a second checks every connection, so a
  request costs no timer;
- HEAD is answered without a body; unknown methods and malformed requests get a
  JSON 400 and the connection closes, as after every error of the framing itself;
- a peer that stops reading: past `max_pipeline` unanswered requests, or while the
  transport's write buffer is full, the connection stops reading.
"""

from __future__ import annotations

import asyncio
from collections import deque
from email.utils import formatdate
from typing import Any

import httptools

from daemon.gateway.front_slots import Slot, SlotWriter
from daemon.gateway.front_types import (
    WATCHED,
    Answer,
    App,
    BodySink,
    FrontLimits,
    Request,
    content_length,
    encode,
    error_answer,
)

__all__ = ["FrontServer"]

_HEAD, _BODY, _IDLE, _CLOSED = range(4)
# The methods' names as the parser gives them, decoded once.
_METHODS = {m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")}
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class FrontServer:
    """Serves an App; owns the connections and the one timeout sweep."""

    def __init__(self, app: App, limits: FrontLimits | None = None) -> None:
        self.app = app
        self.limits = limits or FrontLimits()
        self.connections: set[_Connection] = set()
        self.date = formatdate(usegmt=True).encode()
        self._server: asyncio.AbstractServer | None = None
        self._sweeper: asyncio.TimerHandle | None = None

    def protocol(self) -> _Connection:
        return _Connection(self)

    async def start(self, host: str, port: int) -> int:
        """Listen on host:port (0: any free port); returns the bound port."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self.protocol, host, port, backlog=1024)
        self._sweep()
        # Through Any: uvloop's server holds its sockets in a list where typeshed says a
        # tuple, and compiled (mypyc) the declared type would be checked at run time.
        server: Any = self._server
        return int(server.sockets[0].getsockname()[1])

    def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        # Scheduled first: a connection that fails to time out must not end the sweeps.
        self._sweeper = loop.call_later(self.limits.sweep_s, self._sweep)
        self.date = formatdate(usegmt=True).encode()
        now = loop.time()
        for conn in list(self.connections):
            if conn.deadline <= now:
                conn.time_out()

    async def close(self) -> None:
        """Stop listening and close every connection (answers in flight are lost)."""
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn.abort()
        if self._server is not None:
            await self._server.wait_closed()


class _Connection(asyncio.Protocol):
    """One client connection: parse, queue answers in order, write, time out."""

    def __init__(self, server: FrontServer) -> None:
        self.server = server
        self.limits = server.limits
        self.app = server.app
        self.loop = asyncio.get_running_loop()
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.peer: str | None = None
        self.state = _IDLE
        self.deadline = 0.0
        self.request: Request | None = None
        self.slot: Slot | None = None
        self.slots: deque[Slot] = deque()
        self.head_bytes = 0
        self.closing = False  # no request after the current one is parsed
        self.ignoring = False  # nothing more is read at all
        self.sink: BodySink | None = None  # where a bridged request's body goes
        self.reading_paused = False
        self.writing_paused = False
        self.max_line_bytes = self.limits.max_line_bytes  # read per header line
        self.max_headers = self.limits.max_headers

    # --- transport events ------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if isinstance(peer, tuple) else None
        self.deadline = self.loop.time() + self.limits.idle_timeout_s
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.sink is not None:
            self.sink.lost()
            self.sink = None
        self.state = _CLOSED
        self.server.connections.discard(self)
        self.transport = None

    def pause_writing(self) -> None:
        self.writing_paused = True
        self._pause_reading()

    def resume_writing(self) -> None:
        self.writing_paused = False
        self._maybe_resume_reading()

    def data_received(self, data: bytes) -> None:
        if self.ignoring or self.state == _CLOSED:
            return  # an answer that closes is queued: the rest is not read
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._refuse(400, "upgrades are not supported here")
        except httptools.HttpParserError as exc:
            cause = exc.__context__
            if isinstance(cause, _Stop):
                self.ignoring = True
            elif isinstance(cause, _Refused):
                self._refuse(400, str(cause))
            elif not self.closing:
                self._refuse(400, f"malformed HTTP request: {exc}")
            return
        if self.state != _HEAD:
            return
        # Counted after parsing (on_message_begin resets it), so the count may hold the
        # end of the previous request too: the bound is the limit plus one read.
        self.head_bytes += len(data)
        if self.head_bytes > self.limits.max_head_bytes:
            self._refuse(400, f"the request head is larger than {self.limits.max_head_bytes} bytes")

    # --- parser callbacks ------------------------------------------------------------
    def on_message_begin(self) -> None:
        if self.closing:
            raise _Stop  # the connection ends after the current answer
        self.request = Request(self.peer)
        self.state = _HEAD
        self.head_bytes = 0
        self.deadline = self.loop.time() + self.limits.header_timeout_s

    # The parser's callbacks run per request (on_header per header line): they read
    # the limits from attributes of their own, not through `self.limits`.
    def on_url(self, url: bytes) -> None:
        request = self.request
        assert request is not None
        url = request.url = request.url + url
        if len(url) > self.max_line_bytes:
            raise _Refused(400, f"the request line is longer than {self.max_line_bytes}")

    def on_header(self, name: bytes, value: bytes) -> None:
        request = self.request
        assert request is not None
        headers = request.headers
        headers.append((name, value))  # its count is the limit's: no counter of our own
        if len(headers) > self.max_headers:
            raise _Refused(400, f"more than {self.max_headers} headers")
        if len(name) + len(value) + 2 > self.max_line_bytes:
            raise _Refused(400, f"a header line is longer than {self.max_line_bytes}")
        lower = name.lower()
        if lower in WATCHED:
            watched = request.watched
            if lower not in watched:
                watched[lower] = value

    def on_headers_complete(self) -> None:
        request = self.request
        assert request is not None
        parser = self.parser
        method = parser.get_method()
        request.method = _METHODS.get(method) or method.decode("ascii")
        version = request.version = parser.get_http_version()
        if version == "1.1" and b"host" not in request.watched:
            raise _Refused(400, "an HTTP/1.1 request needs a Host header")
        slot = self.slot = Slot()
        slot.request_close = not parser.should_keep_alive()
        self.slots.append(slot)
        if len(self.slots) > self.limits.max_pipeline:
            self._pause_reading()
        self.state = _BODY
        self.deadline = self.loop.time() + self.limits.body_timeout_s
        sink = self.app.bridge(request, self.slot_writer)
        if sink is not None:
            self.sink, self.closing = sink, True
            return
        length = content_length(request)
        if length is not None and length > self.app.max_body_bytes:
            request.body = None
            self._start(request, slot, close=True)
            return
        expect = request.watched.get(b"expect")
        if expect is not None and expect.lower() == b"100-continue" and length != 0:
            slot.interim = _CONTINUE
            if self.slots[0] is slot:
                self._write_interim(slot)

    def on_body(self, body: bytes) -> None:
        if self.sink is not None:  # bridged: no other request is parsed on this connection
            self.sink.feed(body)
            self.deadline = self.loop.time() + self.limits.body_timeout_s  # while it flows
            return
        request = self.request
        if request is None or request.body is None:
            return  # past the limit and handed over already: dropped
        buffer = request.body
        buffer += body
        if len(buffer) > self.app.max_body_bytes:
            request.body = None
            slot = self.slot
            assert slot is not None
            self._start(request, slot, close=True)

    def on_message_complete(self) -> None:
        request, slot = self.request, self.slot
        if self.sink is not None:
            self.sink.end()  # the sink stays until its answer ends (SlotWriter.close)
            self.request = self.slot = None
            self.state = _IDLE
            return
        if request is None or slot is None:
            return  # handed over already (its body was too large)
        self.request = self.slot = None
        self.state = _IDLE
        self.deadline = self.loop.time() + self.limits.idle_timeout_s
        self._start(request, slot, close=False)

    # --- answering -------------------------------------------------------------------
    def slot_writer(self) -> SlotWriter:
        """Where a bridged request's server writes: the slot of the request whose
        head just ended (made only for a request that is bridged)."""
        assert self.slot is not None
        return SlotWriter(self, self.slot)

    def _start(self, request: Request, slot: Slot, close: bool) -> None:
        """Hand the request to the app; its answer goes to `slot`."""
        if close:
            self.closing = self.ignoring = True  # its body may be unread: read no more
            self.request = self.slot = None
        try:
            answer = self.app.handle(request, lambda a: self._answer(slot, request, a, close))
        except Exception:
            answer = error_answer(500, "internal", "the gateway failed to answer")
        if answer is not None:
            self._answer(slot, request, answer, close)

    def _answer(self, slot: Slot, request: Request, answer: Answer, close: bool) -> None:
        if slot.data is not None:
            return  # answered already (an app that failed after it scheduled an answer)
        close = close or answer.close or slot.request_close
        slot.request_close = close
        slot.data = encode(answer, request, close, self.server.date)
        if self.slots and self.slots[0] is slot:
            self.flush()

    def flush(self) -> None:
        """Write every answer that is ready, in order; close after one that closes."""
        slots, transport = self.slots, self.transport
        while slots and slots[0].data is not None:
            slot = slots.popleft()
            if transport is None:
                continue
            transport.write(slot.data)  # type: ignore[arg-type]
            if slot.request_close:
                self.closing = self.ignoring = True
                slots.clear()
                transport.close()
                return
        if slots:
            head = slots[0]
            if head.interim:
                self._write_interim(head)
            if head.streamed and transport is not None:
                transport.write(bytes(head.streamed))
                head.streamed.clear()
        self._maybe_resume_reading()

    def _write_interim(self, slot: Slot) -> None:
        if self.transport is not None:
            self.transport.write(slot.interim)
        slot.interim = b""

    def _refuse(self, status: int, message: str, kind: str = "bad_request") -> None:
        """A request the framing cannot go on from: answer after the earlier ones, close."""
        slot = self.slot
        if slot is None:  # the head was not complete: no slot yet
            slot = Slot()
            self.slots.append(slot)
        request = self.request or Request(self.peer)
        self.request = self.slot = None
        self.closing = self.ignoring = True
        self.state = _IDLE
        if self.sink is not None:  # a bridged request broke off: its server hears of it
            self.sink.lost()
            self.sink = None
            return
        self._answer(slot, request, error_answer(status, kind, message), True)

    # --- slow clients and flow control ----------------------------------------------
    def time_out(self) -> None:
        """Called by the sweep once the deadline has passed."""
        state = self.state
        if state in (_HEAD, _BODY) and not self.closing:
            limits = self.limits
            what, limit = ("head", limits.header_timeout_s) if state == _HEAD else (
                "body", limits.body_timeout_s)  # fmt: skip
            self._refuse(408, f"the request {what} did not arrive within {limit:g} s",
                         "request_timeout")  # fmt: skip
        elif not self.slots:
            self.abort()  # idle, or every answer written
            return
        # Answers still running: they are not the client's fault; look again later.
        self.deadline = self.loop.time() + self.limits.idle_timeout_s

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _pause_reading(self) -> None:
        if not self.reading_paused and self.transport is not None:
            self.reading_paused = True
            self.transport.pause_reading()

    def _maybe_resume_reading(self) -> None:
        if (
            self.reading_paused
            and not self.writing_paused
            and len(self.slots) <= self.limits.max_pipeline
            and self.transport is not None
        ):
            self.reading_paused = False
            self.transport.resume_reading()


class _Stop(Exception):
    """Raised in a parser callback: parse nothing more on this connection."""


class _Refused(Exception):
    """Raised in a parser callback: the request breaks a limit."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status

"""HTTP/1.1 on one side of a relayed connection: messages parsed by httptools (llhttp,
the C parser behind Node and uvicorn) into a small stream of events (the framing the
relay writes back is in `framing`).

Events, in order per message: a `Head`, body chunks (`bytes`, already de-chunked),
`END`; `CLOSED` when the peer has closed. llhttp refuses the ambiguous framings a
smuggling attack needs (both Content-Length and chunked, bad chunk sizes, bare CR)."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from typing import cast

import httptools

from daemon.egress.messages import BODYLESS, CLOSED, END, Head, ProtocolError, Sentinel

# Reading a side pauses while more body than this waits in its queue of events, and
# resumes once it is down to LOW_WATER.
HIGH_WATER = 256 * 1024
LOW_WATER = 64 * 1024


class _Collector:
    """httptools callbacks, turned into queued events."""

    def __init__(self) -> None:
        self.events: collections.deque[Head | bytes | Sentinel] = collections.deque()
        self.head = Head()
        self.parser: httptools.HttpRequestParser | httptools.HttpResponseParser | None = None
        self.body_bytes = 0  # body queued since the side last looked
        self.idle = True  # between messages (none begun, or the last one complete)

    def on_message_begin(self) -> None:
        self.head = Head()
        self.idle = False

    def on_url(self, url: bytes) -> None:
        self.head.target += url

    def on_status(self, reason: bytes) -> None:
        self.head.reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head.headers.append((name, value))
        size = len(name)  # only two names matter here: skip lowering all the others
        if size == 14 and name.lower() == b"content-length":
            self.head.length = int(value)
        elif (
            size == 17
            and name.lower() == b"transfer-encoding"
            and value.lower().endswith(b"chunked")
        ):
            self.head.chunked = True

    def on_headers_complete(self) -> None:
        parser = self.parser
        assert parser is not None
        head = self.head
        head.keep_alive = parser.should_keep_alive()
        head.upgrade = parser.should_upgrade()
        if isinstance(parser, httptools.HttpRequestParser):
            head.method = parser.get_method()
        else:
            head.status = parser.get_status_code()
        self.events.append(head)

    def on_body(self, body: bytes) -> None:
        self.events.append(body)
        self.body_bytes += len(body)

    def on_message_complete(self) -> None:
        self.events.append(END)
        self.idle = True


class HttpSide(asyncio.Protocol):
    """One connection, as the protocol of its transport: bytes are parsed as they
    arrive (no stream buffer between the socket and the parser), events are queued,
    and the one coroutine waiting for an event is woken. Writes are batched until
    `flush`. Reading pauses while more than HIGH_WATER of body waits to be relayed."""

    def __init__(
        self, *, requests: bool, on_connected: Callable[[HttpSide], None] | None = None
    ) -> None:
        self.transport: asyncio.Transport | None = None
        self.sent = 0
        self.received = 0
        self.trailing = b""  # bytes past an upgrade (CONNECT) head
        self.upgraded = False
        self._requests = requests
        self._on_connected = on_connected
        self._collector = _Collector()
        self._events = self._collector.events
        # The events parsed and not yet taken: the callbacks look at them here.
        self.queued = self._events
        self._parser = self._new_parser()
        self._pending: list[bytes] = []
        self._until_close = False
        self._head_only = False
        self._closed = False
        self._error: Exception | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._buffered = 0  # body bytes queued in events
        self._read_paused = False
        self.write_paused = False
        self._drained: asyncio.Future[None] | None = None
        self._tls = False
        self._loop: asyncio.AbstractEventLoop | None = None
        # Called instead of waking a waiting coroutine when events arrive or the side
        # ends (the relay's callbacks, `InlineRelay`); None: the waiter is woken.
        self.listener: Callable[[], None] | None = None
        self.session_kept = False  # an upstream's TLS session, once it answered
        # an upstream's place, for the idle pool (a `pool.PoolKey`)
        self.pool_key: tuple[object, ...] | None = None
        self.reused = False  # an upstream taken from the idle pool (its server may have left)
        self.idle_since = 0.0  # the loop's time when it was last put in the idle pool

    # --- the transport's side ---------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.attach(cast(asyncio.Transport, transport))
        if self._on_connected is not None:
            self._on_connected(self)

    def attach(self, transport: asyncio.Transport) -> None:
        """Take a transport (also one that start_tls made, which calls no
        connection_made)."""
        self.transport = transport
        self._tls = transport.get_extra_info("sslcontext") is not None
        # kept: asyncio.get_running_loop() calls getpid(), a system call, each time
        self._loop = asyncio.get_running_loop()

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        if self.upgraded or self._error is not None:
            self.trailing += data  # read on as a tunnel's bytes, never as HTTP
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            # What follows is a tunnel's (or nobody's): stop reading until its
            # owner takes the transport over.
            self.upgraded = True
            self.trailing = data[upgrade.args[0] :]
            self._pause_reading()
        except httptools.HttpParserError as err:
            self._error = ProtocolError(f"malformed HTTP: {err}")
            self._pause_reading()
        if self._collector.body_bytes:
            self._buffered += self._collector.body_bytes
            self._collector.body_bytes = 0
            if self._buffered > HIGH_WATER and not self._read_paused:
                self._pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self._end()
        # Keep the sending side open (a half-closed client may still read its answer);
        # TLS transports close on EOF whatever the protocol answers.
        return not self._tls

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None and self._error is None:
            self._error = exc if isinstance(exc, OSError) else ConnectionResetError(str(exc))
        self._end()
        self.write_paused = False
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    def _end(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._wake()

    def _wake(self) -> None:
        listener = self.listener
        if listener is not None:
            listener()
            return
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _pause_reading(self) -> None:
        if self.transport is not None and not self._read_paused:
            self._read_paused = True
            self.transport.pause_reading()

    # --- the relay's side -------------------------------------------------------

    def _new_parser(self) -> httptools.HttpRequestParser | httptools.HttpResponseParser:
        kind = httptools.HttpRequestParser if self._requests else httptools.HttpResponseParser
        parser = kind(self._collector)
        self._collector.parser = parser
        self._collector.idle = True
        return parser

    def expect_response(self, head_only: bool) -> None:
        """Before reading a response: the parser, kept when it stands between two
        messages, else a fresh one (a HEAD response's Content-Length announces a body
        that never comes, which the kept parser would wait for; whatever a server sent
        unasked is dropped with the old parser)."""
        if self._head_only or self._events or not self._collector.idle:
            self._events.clear()
            self._parser = self._new_parser()
        self._buffered = 0
        self._head_only = head_only
        self._until_close = False

    def take(self) -> Head | bytes | Sentinel | None:
        """The next event if one is queued already (None: it must be waited for):
        most of a small message's events come in one read, and taking them needs no
        coroutine."""
        events = self._events
        if not events:
            return None
        event = events.popleft()
        if type(event) is bytes:
            self._buffered -= len(event)
            if self._read_paused and self._buffered <= LOW_WATER and self._parsing:
                self._read_paused = False
                if self.transport is not None:
                    self.transport.resume_reading()
        elif not self._requests and isinstance(event, Head):
            self._on_response_head(event)
        return event

    async def next_event(self, flush_first: HttpSide | None = None) -> Head | bytes | Sentinel:
        """The next event, waiting for the network as needed. Before waiting, the
        other side's batched writes go out, so nothing sits in a buffer while this
        side waits for an answer to it."""
        events = self._events
        while not events:
            if self._error is not None:
                raise self._error
            if self._closed:
                if self._until_close:  # a body framed by the end of the connection
                    self._until_close = False
                    return END
                return CLOSED
            if flush_first is not None and flush_first._pending:
                await flush_first.flush()
            if self._pending:
                await self.flush()
            if events or self._closed or self._error is not None:
                continue
            assert self._waiter is None, "one reader per side"
            self._waiter = self.loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        event = self.take()
        assert event is not None
        return event

    def _on_response_head(self, head: Head) -> None:
        if head.status < 200:
            return
        if self._head_only or head.status in BODYLESS:
            # No body follows: end the message here, whatever the parser expects.
            self._events.clear()
            self._buffered = 0
            self._events.append(END)
        elif not head.chunked and head.length is None:
            self._until_close = True

    def write(self, data: bytes) -> None:
        self.sent += len(data)
        self._pending.append(data)

    async def flush(self) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            self._pending.clear()
            raise ConnectionResetError("the connection is closed")
        if self._pending:
            pending = self._pending
            transport.write(pending[0] if len(pending) == 1 else b"".join(pending))
            pending.clear()
        if self.write_paused:
            self._drained = self.loop.create_future()
            await self._drained

    def send_now(self, data: bytes) -> bool:
        """Write `data` after the batched writes, at once, from a callback (no waiting
        for the transport's buffer to drain); False when the connection is closing."""
        self.sent += len(data)
        transport = self.transport
        pending = self._pending
        if transport is None or transport.is_closing():
            pending.clear()
            return False
        if pending:
            pending.append(data)
            data = b"".join(pending)
            pending.clear()
        transport.write(data)
        return True

    def take_message(self) -> list[bytes]:
        """Take the head and body of a message whose END is queued already (the
        caller checked that its head needs nothing of `take`'s): its body chunks."""
        events = self._events
        events.popleft()  # the head
        body: list[bytes] = []
        event = events.popleft()
        while event is not END:
            body.append(event)  # type: ignore[arg-type]  # only body chunks come before END
            event = events.popleft()
        if body:
            self._buffered -= sum(map(len, body))
            if self._read_paused and self._buffered <= LOW_WATER and self._parsing:
                self._read_paused = False
                if self.transport is not None:
                    self.transport.resume_reading()
        return body

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        return loop

    @property
    def ended(self) -> bool:
        """The peer closed, or what it sent could not be parsed."""
        return self._closed or self._error is not None

    @property
    def _parsing(self) -> bool:
        return not self.upgraded and self._error is None

    @property
    def at_eof(self) -> bool:
        transport = self.transport
        return self._closed or transport is None or transport.is_closing()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

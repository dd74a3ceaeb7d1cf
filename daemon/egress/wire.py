"""HTTP/1.1 on one side of a relayed connection: messages parsed by httptools (llhttp,
the C parser behind Node and uvicorn) into a small stream of events, and the few
lines of framing the relay writes back (a head, a body as-is or re-chunked).

Events, in order per message: a `Head`, body chunks (`bytes`, already de-chunked),
`END`; `CLOSED` when the peer has closed. llhttp refuses the ambiguous framings a
smuggling attack needs (both Content-Length and chunked, bad chunk sizes, bare CR)."""

from __future__ import annotations

import asyncio
import collections
from dataclasses import dataclass, field

import httptools

READ_SIZE = 64 * 1024
# Statuses whose responses never have a body, whatever their headers say.
BODYLESS = frozenset({204, 304})


class Sentinel:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


END = Sentinel("END")
CLOSED = Sentinel("CLOSED")


@dataclass
class Head:
    """A request or response head. Header names keep the case they were sent in."""

    method: bytes = b""
    target: bytes = b""
    status: int = 0
    reason: bytes = b""
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    keep_alive: bool = True
    chunked: bool = False
    length: int | None = None
    upgrade: bool = False

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None

    @property
    def has_body(self) -> bool:
        """For a request: whether a body follows the head."""
        return self.chunked or bool(self.length)


class ProtocolError(Exception):
    pass


class _Collector:
    """httptools callbacks, turned into queued events."""

    def __init__(self) -> None:
        self.events: collections.deque[Head | bytes | Sentinel] = collections.deque()
        self.head = Head()
        self.parser: httptools.HttpRequestParser | httptools.HttpResponseParser | None = None

    def on_message_begin(self) -> None:
        self.head = Head()

    def on_url(self, url: bytes) -> None:
        self.head.target += url

    def on_status(self, reason: bytes) -> None:
        self.head.reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head.headers.append((name, value))
        lowered = name.lower()
        if lowered == b"content-length":
            self.head.length = int(value)
        elif lowered == b"transfer-encoding" and value.lower().endswith(b"chunked"):
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

    def on_message_complete(self) -> None:
        self.events.append(END)


class HttpSide:
    """One connection: read its messages, write to it (batched until `flush`)."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, requests: bool
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.sent = 0
        self.received = 0
        self.trailing = b""  # bytes past an upgrade (CONNECT) head
        self.upgraded = False
        self._requests = requests
        self._collector = _Collector()
        self._parser = self._new_parser()
        self._pending: list[bytes] = []
        self._until_close = False
        self._head_only = False
        self._closed = False

    def _new_parser(self) -> httptools.HttpRequestParser | httptools.HttpResponseParser:
        kind = httptools.HttpRequestParser if self._requests else httptools.HttpResponseParser
        parser = kind(self._collector)
        self._collector.parser = parser
        return parser

    def expect_response(self, head_only: bool) -> None:
        """Before reading a response: a fresh parser (a HEAD response's Content-Length
        announces a body that never comes, which a kept parser would wait for)."""
        self._collector.events.clear()
        self._parser = self._new_parser()
        self._head_only = head_only
        self._until_close = False

    async def next_event(self, flush_first: HttpSide | None = None) -> Head | bytes | Sentinel:
        """The next event, reading as needed. Before waiting on the network the other
        side's batched writes go out, so nothing sits in a buffer while this side
        waits for an answer to it."""
        events = self._collector.events
        while not events:
            if self._closed:
                return CLOSED
            if flush_first is not None and flush_first._pending:
                await flush_first.flush()
            if self._pending:
                await self.flush()
            await self._read()
        event = events.popleft()
        if isinstance(event, Head) and not self._requests:
            self._on_response_head(event)
        return event

    def _on_response_head(self, head: Head) -> None:
        if head.status < 200:
            return
        if self._head_only or head.status in BODYLESS:
            # No body follows: end the message here, whatever the parser expects.
            self._collector.events.clear()
            self._collector.events.append(END)
        elif not head.chunked and head.length is None:
            self._until_close = True

    async def _read(self) -> None:
        data = await self.reader.read(READ_SIZE)
        self.received += len(data)
        if not data:
            self._closed = True
            if self._until_close:
                self._collector.events.append(END)
            return
        if self.upgraded:
            raise ProtocolError("data after an upgrade is read as a tunnel, not as HTTP")
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self.upgraded = True
            self.trailing = data[upgrade.args[0] :]
        except httptools.HttpParserError as err:
            raise ProtocolError(f"malformed HTTP: {err}") from None

    def write(self, data: bytes) -> None:
        self.sent += len(data)
        self._pending.append(data)

    async def flush(self) -> None:
        if not self._pending:
            return
        data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._pending.clear()
        writer = self.writer
        writer.write(data)
        # drain() only waits while the transport's buffer is over its high-water mark,
        # and raises once the connection is lost (the transport is then closing): with
        # an empty buffer on an open transport it has nothing to do, and skipping the
        # coroutine saves a good part of a small request's cost in the proxy.
        transport = writer.transport
        if transport.is_closing() or transport.get_write_buffer_size():
            await writer.drain()

    @property
    def at_eof(self) -> bool:
        return self._closed or self.reader.at_eof() or self.writer.is_closing()

    def close(self) -> None:
        self.writer.close()


def request_head(method: bytes, target: bytes, headers: list[tuple[bytes, bytes]]) -> bytes:
    lines = [method + b" " + target + b" HTTP/1.1"]
    lines.extend(k + b": " + v for k, v in headers)
    return b"\r\n".join(lines) + b"\r\n\r\n"


def response_head(status: int, reason: bytes, headers: list[tuple[bytes, bytes]]) -> bytes:
    lines = [b"HTTP/1.1 %d %s" % (status, reason or b"-")]
    lines.extend(k + b": " + v for k, v in headers)
    return b"\r\n".join(lines) + b"\r\n\r\n"


class BodyWriter:
    """Writes a body as it was framed: raw under Content-Length, re-chunked otherwise."""

    def __init__(self, side: HttpSide, chunked: bool) -> None:
        self.side = side
        self.chunked = chunked

    def data(self, chunk: bytes) -> None:
        if not chunk:
            return
        if self.chunked:
            self.side.write(b"%x\r\n" % len(chunk))
            self.side.write(chunk)
            self.side.write(b"\r\n")
        else:
            self.side.write(chunk)

    def end(self) -> None:
        if self.chunked:
            self.side.write(b"0\r\n\r\n")

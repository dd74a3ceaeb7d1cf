"""Requests the lean front does not answer itself, answered by an aiohttp server in
the same process: the gateway's uploads route (and anything its aiohttp app adds).

At the end of such a request's head the front hands it over: the head is written
again for aiohttp's own request handler (with `Connection: close`: the connection
ends after this answer, so that no request needs parsing by both), the body is
streamed to it as it arrives (re-chunked when it came chunked), and whatever aiohttp
writes goes to the client in the order of the requests (front_slots.SlotWriter).
aiohttp sees the client's real address (`get_extra_info` passes through) and
applies its own limits and `Expect: 100-continue`; reading pauses when its body
buffer is full, as on a socket of its own.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp.web_server import Server

from daemon.gateway.front_types import AnswerWriter, Request

__all__ = ["AiohttpBridge"]

_HOP_BY_HOP = (b"connection", b"keep-alive")


class AiohttpBridge:
    """Opens one aiohttp request handler per bridged request."""

    def __init__(self, server: Server) -> None:
        self.server = server  # an AppRunner's `server`, after setup()

    def open(self, request: Request, out: AnswerWriter) -> _Sink:
        handler = self.server()
        transport = _BridgeTransport(out, handler)
        handler.connection_made(transport)
        chunked = any(
            n.lower() == b"transfer-encoding" and b"chunked" in v.lower()
            for n, v in request.headers
        )
        handler.data_received(_head(request))
        return _Sink(handler, transport, chunked)


def _head(request: Request) -> bytes:
    lines = [b"%s %s HTTP/%s" % (request.method.encode(), request.url, request.version.encode())]
    lines.extend(n + b": " + v for n, v in request.headers if n.lower() not in _HOP_BY_HOP)
    lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n"


class _Sink:
    """The body, on its way to aiohttp's handler (front_types.BodySink)."""

    def __init__(self, handler: Any, transport: _BridgeTransport, chunked: bool) -> None:
        self.handler = handler
        self.transport = transport
        self.chunked = chunked

    def feed(self, data: bytes) -> None:
        if self.chunked:
            data = b"%x\r\n%s\r\n" % (len(data), data)
        self.handler.data_received(data)

    def end(self) -> None:
        if self.chunked:
            self.handler.data_received(b"0\r\n\r\n")

    def lost(self) -> None:
        self.transport.lose()


class _BridgeTransport(asyncio.Transport):
    """The transport aiohttp's handler writes to: the client's connection, in turn."""

    def __init__(self, out: AnswerWriter, handler: Any) -> None:
        super().__init__()
        self._out = out
        self._handler = handler
        self._closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._out.get_extra_info(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._closed:
            self._out.write(bytes(data))

    def writelines(self, chunks: Any) -> None:
        self.write(b"".join(chunks))

    def is_closing(self) -> bool:
        return self._closed or self._out.closed

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._out.close()
            asyncio.get_running_loop().call_soon(self._handler.connection_lost, None)

    def abort(self) -> None:
        self.close()

    def lose(self) -> None:
        """The client went away: the handler hears it as a lost connection."""
        if not self._closed:
            self._closed = True
            self._handler.connection_lost(None)

    def pause_reading(self) -> None:
        self._out.pause_reading()

    def resume_reading(self) -> None:
        self._out.resume_reading()

    def is_reading(self) -> bool:
        return not self._closed

    def can_write_eof(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

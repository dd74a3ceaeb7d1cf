"""The few lines of framing the relay writes itself (llhttp only parses): a head, and
a body as it was framed (raw under Content-Length, re-chunked otherwise)."""

from __future__ import annotations

from daemon.egress.wire import HttpSide


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

"""The lean front's types: its limits, a parsed request, an answer, and what the
served application provides (daemon/gateway/front.py serves it)."""

from __future__ import annotations

import http
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import orjson

from daemon.config.daemon_config import Config

__all__ = [
    "JSON",
    "WATCHED",
    "Answer",
    "AnswerWriter",
    "App",
    "BodySink",
    "FrontLimits",
    "Request",
    "Respond",
    "content_length",
    "encode",
    "error_answer",
]

_REASONS = {s.value: s.phrase for s in http.HTTPStatus}

JSON = "application/json"


@dataclass(frozen=True)
class FrontLimits:
    max_line_bytes: int = 8190  # request line, and each header line (aiohttp's default)
    max_headers: int = 128  # header lines per request (aiohttp's default)
    max_head_bytes: int = 65536  # request line and all headers together
    header_timeout_s: float = Config.gateway_header_timeout_s  # first byte -> end of the head
    body_timeout_s: float = Config.gateway_body_timeout_s  # end of the head -> end of the body
    idle_timeout_s: float = Config.gateway_idle_timeout_s  # a keep-alive connection, idle
    max_pipeline: int = 32  # unanswered requests before the connection stops reading
    sweep_s: float = 1.0  # how often the timeouts are checked


class Answer:
    """A response: status, body and extra headers (name, value)."""

    __slots__ = ("body", "close", "headers", "status")

    def __init__(
        self,
        status: int,
        body: bytes,
        headers: tuple[tuple[str, str], ...] = (),
        close: bool = False,
    ) -> None:
        self.status = status
        self.body = body
        self.headers = headers  # Content-Type included when there is one
        self.close = close


def error_answer(status: int, kind: str, message: str, *headers: tuple[str, str]) -> Answer:
    body = orjson.dumps({"error": {"type": kind, "message": message}})
    return Answer(status, body, (("Content-Type", JSON), *headers))


# The headers the front and the call path read on every request.
WATCHED = frozenset((b"authorization", b"content-length", b"expect", b"host", b"prefer"))


class Request:
    """One parsed request. `body` is None when it went past the app's body limit."""

    __slots__ = ("body", "headers", "method", "peer", "url", "version", "watched")

    def __init__(self, peer: str | None) -> None:
        self.method = ""
        self.url = b""
        self.version = "1.1"
        self.headers: list[tuple[bytes, bytes]] = []  # as received, names as sent
        self.watched: dict[bytes, bytes] = {}  # first value of each WATCHED header
        self.body: bytearray | None = bytearray()
        self.peer = peer

    def header(self, lower_name: bytes) -> str | None:
        """The first value of a header (name given lower-case), as aiohttp decodes it.
        The headers of WATCHED were picked out as they arrived: no scan."""
        value = self.watched.get(lower_name) if lower_name in WATCHED else self._scan(lower_name)
        return None if value is None else value.decode("utf-8", "surrogateescape")

    def _scan(self, lower_name: bytes) -> bytes | None:
        for name, value in self.headers:
            if name.lower() == lower_name:
                return value
        return None

    def header_all(self, lower_name: bytes) -> list[str]:
        return [
            v.decode("utf-8", "surrogateescape") for n, v in self.headers if n.lower() == lower_name
        ]


class BodySink(Protocol):
    """Takes a streamed request body (see App.bridge)."""

    def feed(self, data: bytes) -> None: ...
    def end(self) -> None: ...
    def lost(self) -> None: ...


class AnswerWriter(Protocol):
    """Where another server writes a bridged request's answer (front_slots.SlotWriter)."""

    def write(self, data: bytes) -> None: ...
    def close(self) -> None: ...
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def get_extra_info(self, name: str, default: object = None) -> object: ...
    @property
    def closed(self) -> bool: ...


Respond = Callable[[Answer], None]


class App(Protocol):
    """What the server serves: one `handle` per complete request, or per request
    whose body went past `max_body_bytes` as soon as that is known (its `body` is
    None; the connection closes after its answer, the rest of the body unread)."""

    max_body_bytes: int

    def bridge(self, request: Request, out: Callable[[], AnswerWriter]) -> BodySink | None:
        """At the end of the head: a sink to stream this request's body to when
        another server answers it (writing to the writer `out()` makes), else None."""
        ...

    def handle(self, request: Request, respond: Respond) -> Answer | None:
        """An answer now, or None and `respond(answer)` later, once (from a callback:
        a call answered by its worker costs no future or task of the front's)."""
        ...


_STATUS_LINES = {
    (version, status): f"HTTP/{version} {status} {reason}\r\n"
    for version in ("1.0", "1.1")
    for status, reason in _REASONS.items()
}


def encode(answer: Answer, request: Request, close: bool, date: bytes) -> bytes:
    """The bytes of an answer to `request` (no body for HEAD), in one join."""
    status = answer.status
    version = "1.0" if request.version == "1.0" else "1.1"
    line = _STATUS_LINES.get((version, status)) or f"HTTP/{version} {status} Unknown\r\n"
    body = answer.body
    head = [line]
    for name, value in answer.headers:
        head.append(f"{name}: {value}\r\n")
    head.append(f"Content-Length: {len(body)}\r\n")
    if close:
        if version == "1.1":
            head.append("Connection: close\r\n")
    elif version == "1.0":
        head.append("Connection: keep-alive\r\n")
    head.append("Date: ")
    text = "".join(head).encode("latin-1")
    if request.method == "HEAD":
        return b"".join((text, date, _HEAD_END))
    return b"".join((text, date, _HEAD_END, body))


_HEAD_END = b"\r\nServer: scriptd\r\n\r\n"


def content_length(request: Request) -> int | None:
    value = request.watched.get(b"content-length")
    if value is None:
        return None
    try:
        return int(value)  # bytes: as int() reads its text, without decoding it first
    except ValueError:
        return None

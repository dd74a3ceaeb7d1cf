"""An HTTP message as the proxy's two sides pass it on: its `Head`, and the events that
follow it on a side's stream (body chunks as bytes, then `END`; `CLOSED` when the peer
has closed). daemon/egress/wire.py parses a side's bytes into them."""

from __future__ import annotations

# Statuses whose responses never have a body, whatever their headers say.
BODYLESS = frozenset({204, 304})


class Sentinel:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


END = Sentinel("END")
CLOSED = Sentinel("CLOSED")


class Head:
    """A request or response head. Header names keep the case they were sent in.

    A plain class rather than a dataclass: one is made per message, and the
    dataclass's `__init__` (a default factory, nine parameters) took twice as long."""

    __slots__ = (
        "chunked",
        "headers",
        "keep_alive",
        "length",
        "method",
        "reason",
        "status",
        "target",
        "upgrade",
    )

    def __init__(self, method: bytes = b"", target: bytes = b"") -> None:
        self.method = method
        self.target = target
        self.status = 0
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.keep_alive = True
        self.chunked = False
        self.length: int | None = None
        self.upgrade = False

    def __repr__(self) -> str:
        return f"Head({self.method!r}, {self.target!r}, {self.status}, {self.headers!r})"

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

"""The HTTP request log of one call, as seed 004 describes it: the total sent, the
first 100 in detail (method, URL, request and response headers, status, the request
body's first 1 KB, duration, bytes), how many more were sent without detail, and every
refusal with its rule. HTTPS without inspection is logged as host, port, bytes and
duration only.

Secret values never reach the log: `Redactor` replaces them, in headers, URLs and
bodies, by `[secret NAME]` when the log is read (`to_json`, the only way a log leaves
the proxy). Until then a detailed entry holds what the proxy relayed, raw, in memory.
In the JSON, a head's headers are (name, value) pairs of text, as tuples: a head that
comes again and again in one log (a client sends the same headers request after
request) is made text once and shared by its entries, which only immutable values
allow. Serialised, they are the same arrays as lists would give."""

from __future__ import annotations

import base64
import itertools
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, TypeAlias

from daemon.metrics.instruments import EgressMeter

DETAILED_LIMIT = 100
BODY_LIMIT = 1024
# Refusals are kept in full up to this many; a script looping on a refused URL
# must not grow the record without bound.
REFUSAL_LIMIT = 100
# The metrics' request and byte counters are brought up to date every this many
# requests and when the log is taken (a counter update costs as much as the rest of
# the log's work for a request).
PUBLISH_EVERY = 64

RawHeaders: TypeAlias = list[tuple[bytes, bytes]]
# A head's headers in the log's JSON: (name, value) pairs of text.
HeadersText: TypeAlias = tuple[tuple[str, str], ...]


class Redactor:
    """Replaces each secret value (as it is, URL-encoded, and base64 as in Basic auth)
    by `[secret NAME]`. Longer values go first, so one secret that contains another
    is replaced whole."""

    def __init__(self, secrets: Mapping[str, str]) -> None:
        forms: dict[bytes, str] = {}
        for name, value in secrets.items():
            if not value:
                continue
            for form in _forms(value):
                forms.setdefault(form, name)
        self._forms = sorted(forms.items(), key=lambda item: -len(item[0]))
        self.longest = max((len(f) for f, _ in self._forms), default=0)

    def redact_bytes(self, data: bytes) -> bytes:
        for form, name in self._forms:
            if form in data:
                data = data.replace(form, f"[secret {name}]".encode())
        return data

    def redact_text(self, text: str) -> str:
        if not self._forms:
            return text
        return self.redact_bytes(text.encode("utf-8", "surrogateescape")).decode("utf-8", "replace")

    def headers(self, headers: RawHeaders) -> HeadersText:
        """Header names and values as text (latin-1, as HTTP/1.1 carries them), with
        secrets replaced in their raw bytes. Most heads hold no secret: one look over
        the whole head tells, and only then is each name and value searched."""
        if self._forms and self._any_in(b"\n".join(itertools.chain.from_iterable(headers))):
            redact = self.redact_bytes
            return tuple([(_latin(redact(k)), _latin(redact(v))) for k, v in headers])
        return tuple([(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers])

    @property
    def has_secrets(self) -> bool:
        return bool(self._forms)

    def any_in(self, data: bytes) -> bool:
        """Whether any secret, in any of its forms, appears in `data`."""
        return self._any_in(data)

    def _any_in(self, data: bytes) -> bool:
        # a plain loop: on the hot path, a generator costs more than the search itself
        for form, _ in self._forms:  # noqa: SIM110
            if form in data:
                return True
        return False


def _forms(value: str) -> set[bytes]:
    raw = value.encode()
    quoted = urllib.parse.quote(value, safe="").encode()
    quoted_plus = urllib.parse.quote_plus(value).encode()
    return {raw, quoted, quoted_plus, base64.b64encode(raw).rstrip(b"=")}


def _latin(data: bytes) -> str:
    return data.decode("latin-1")


class _HeadsText:
    """The heads of one log's entries as text, each distinct raw head made text (and
    searched for secrets, when the log holds any) once."""

    def __init__(self, redactor: Redactor) -> None:
        self._redactor = redactor
        self._made: dict[tuple[tuple[bytes, bytes], ...], HeadersText] = {}

    def text(self, headers: RawHeaders) -> HeadersText:
        raw = tuple(headers)
        text = self._made.get(raw)
        if text is None:
            text = self._made[raw] = self._redactor.headers(headers)
        return text


class RequestEntry:
    """One request as seen on the wire: raw URL, headers and the start of the body,
    kept as they came. Making them text and redacting their secrets waits until the
    log is read (`RequestLog.to_json`), off the request's path. `status` is None when
    no response came."""

    __slots__ = (
        "body",
        "body_total",
        "bytes_in",
        "bytes_out",
        "duration_ms",
        "error",
        "method",
        "request_headers",
        "response_headers",
        "started_at",
        "status",
        "url",
    )

    def __init__(
        self, method: str, url: str, request_headers: RawHeaders, started_at: float
    ) -> None:
        self.method = method
        self.url = url  # secrets still in it
        self.request_headers = request_headers
        self.started_at = started_at
        self.body = b""  # the body's first bytes, secrets still in them
        self.body_total = 0
        self.status: int | None = None
        self.response_headers: RawHeaders = []
        self.duration_ms = 0.0
        self.bytes_out = 0
        self.bytes_in = 0
        self.error: str | None = None

    def to_json(self, redactor: Redactor, heads: _HeadsText) -> dict[str, Any]:
        """The entry as the execution record shows it: text, secrets replaced (in the
        URL and body by `redactor`, in the heads by `heads`)."""
        body = redactor.redact_bytes(self.body)[:BODY_LIMIT] if self.body else b""
        return {
            "method": self.method,
            "url": redactor.redact_text(self.url),
            "request_headers": heads.text(self.request_headers),
            "started_at": self.started_at,
            "request_body": body.decode("utf-8", "replace"),
            "request_body_truncated": self.body_total > BODY_LIMIT,
            "status": self.status,
            "response_headers": heads.text(self.response_headers),
            "duration_ms": self.duration_ms,
            "bytes_out": self.bytes_out,
            "bytes_in": self.bytes_in,
            "error": self.error,
            "kind": "http",
        }


@dataclass
class TunnelEntry:
    """HTTPS seen from outside (inspection off): host, port, bytes, duration."""

    host: str
    port: int
    started_at: float
    duration_ms: float = 0.0
    bytes_out: int = 0
    bytes_in: int = 0
    error: str | None = None


@dataclass
class Refusal:
    method: str
    target: str
    rule: str
    message: str
    at: float


class RequestLog:
    """What one call (or, between calls, one replica) sent. Not thread-safe: it is
    written from the proxy's event loop only."""

    def __init__(self, redactor: Redactor | None = None, meter: EgressMeter | None = None) -> None:
        self.redactor = redactor or Redactor({})
        self.meter = meter  # the script's counters in the metrics (they outlive the log)
        self.total = 0
        self.entries: list[RequestEntry | TunnelEntry] = []
        self.not_detailed = 0
        self.refusals: list[Refusal] = []
        self.refusals_dropped = 0
        self.bytes_out = 0
        self.bytes_in = 0
        self._unpublished = 0  # requests not yet in the meter
        self._published_out = 0
        self._published_in = 0
        self._taken = False

    def publish(self) -> None:
        """Bring the meter's counters up to date with this log."""
        meter = self.meter
        if meter is None:
            return
        if self._unpublished:
            meter.requests.inc(self._unpublished)
            self._unpublished = 0
        meter.count_bytes(self.bytes_out - self._published_out, self.bytes_in - self._published_in)
        self._published_out, self._published_in = self.bytes_out, self.bytes_in

    def taken(self) -> None:
        """The call ended and its log was taken: publish now, and from now on publish
        at once what a request still running adds."""
        self._taken = True
        self.publish()

    def _count_request(self) -> None:
        self.total += 1
        self._unpublished += 1
        if self._unpublished >= PUBLISH_EVERY:
            self.publish()

    def begin_request(self, method: str, url: str, headers: RawHeaders) -> RequestEntry | None:
        """Count a request; return its entry when it is among the first 100."""
        self._count_request()
        if len(self.entries) >= DETAILED_LIMIT:
            self.not_detailed += 1
            return None
        entry = RequestEntry(method, url, headers, time.time())
        self.entries.append(entry)
        return entry

    @property
    def body_capture(self) -> int:
        """How much of a request body to keep for the log: 1 KB, plus the longest
        secret, so a secret that starts within the first 1 KB is redacted whole."""
        return BODY_LIMIT + self.redactor.longest

    def record_body(self, entry: RequestEntry, captured: bytes, total: int) -> None:
        entry.body, entry.body_total = captured, total

    def begin_tunnel(self, host: str, port: int) -> TunnelEntry | None:
        self._count_request()
        if len(self.entries) >= DETAILED_LIMIT:
            self.not_detailed += 1
            return None
        entry = TunnelEntry(host=host, port=port, started_at=time.time())
        self.entries.append(entry)
        return entry

    def refused(self, method: str, target: str, rule: str, message: str) -> None:
        self.total += 1
        if self.meter is not None:
            self.meter.refused(rule)
        if len(self.refusals) >= REFUSAL_LIMIT:
            self.refusals_dropped += 1
            return
        redact = self.redactor.redact_text
        self.refusals.append(Refusal(method, redact(target), rule, redact(message), time.time()))

    def count_bytes(self, sent: int, received: int) -> None:
        self.bytes_out += sent
        self.bytes_in += received
        if self._taken:
            self.publish()

    def to_json(self) -> dict[str, Any]:
        redactor = self._entries_redactor()
        heads = _HeadsText(redactor)
        return {
            "total": self.total,
            "requests": [
                e.to_json(redactor, heads)
                if isinstance(e, RequestEntry)
                else _fields(e) | {"kind": "tunnel"}
                for e in self.entries
            ],
            "not_detailed": self.not_detailed,
            "refusals": [_fields(r) for r in self.refusals],
            "refusals_not_kept": self.refusals_dropped,
            "bytes_out": self.bytes_out,
            "bytes_in": self.bytes_in,
        }

    def _entries_redactor(self) -> Redactor:
        """The redactor the detailed entries need: none at all when no secret appears
        anywhere in them, which one search over all their raw bytes tells (most logs
        hold no secret, and one pass costs less than a look per entry and header)."""
        redactor = self.redactor
        if not redactor.has_secrets or redactor.any_in(_raw_bytes(self.entries)):
            return redactor
        return _NO_SECRETS


_NO_SECRETS = Redactor({})


def _raw_bytes(entries: list[RequestEntry | TunnelEntry]) -> bytes:
    """The detailed entries' URLs, bodies and distinct heads, joined (the URLs encoded
    in one go; a head that comes again, as a client's and a server's heads do request
    after request, only once). Joining can only make a secret seem present (then each
    entry is searched), never hide one."""
    urls: list[str] = []
    parts: list[bytes] = []
    seen: set[tuple[tuple[bytes, bytes], ...]] = set()
    for entry in entries:
        if isinstance(entry, RequestEntry):
            urls.append(entry.url)
            if entry.body:
                parts.append(entry.body)
            head = tuple(entry.request_headers)
            if head not in seen:
                seen.add(head)
                parts.extend(itertools.chain.from_iterable(head))
            head = tuple(entry.response_headers)
            if head not in seen:
                seen.add(head)
                parts.extend(itertools.chain.from_iterable(head))
    parts.append("\n".join(urls).encode("utf-8", "surrogateescape"))
    return b"\n".join(parts)


def _fields(entry: TunnelEntry | Refusal) -> dict[str, Any]:
    """An entry's fields as a dict, like dataclasses.asdict at a fraction of its cost
    (asdict deep-copies every header pair). A shallow copy is enough: an entry's lists
    are built whole and then only ever replaced, never changed in place. Read field by
    field rather than from `__dict__`, which a class compiled with mypyc has not."""
    return {field.name: getattr(entry, field.name) for field in fields(entry)}

"""Where a relayed request goes: its scheme, host, port and path, from an absolute URL
(a request to the proxy itself) or from a path inside a CONNECT tunnel; parsed once
per distinct target and then reused."""

from __future__ import annotations

import functools
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass

from daemon.egress.messages import Head


class BadRequest(Exception):
    pass


@dataclass(frozen=True)
class RequestTarget:
    scheme: str
    host: str
    port: int
    url: str  # as logged
    path: bytes  # as sent upstream (origin-form)
    set_host: bytes | None  # Host header to send, None to keep the client's


TargetOf = Callable[[Head], RequestTarget]


def absolute_target(request: Head) -> RequestTarget:
    """A request to the proxy itself: the target is an absolute URL. https:// is taken
    too (axios in Node sends it so): the proxy then speaks TLS to the server."""
    if len(request.target) > _CACHED_URL_LIMIT:
        return _parse_absolute.__wrapped__(request.target)
    return _parse_absolute(request.target)


# A client asks for the same few URLs again and again: parsing one (urlsplit, and its
# .port and .hostname, which parse the netloc again) costs more than the rest of the
# request's own work in the proxy. RequestTarget is frozen, so a cached one is safe to
# share; a bad URL raises and is never cached. Long URLs are parsed each time, so the
# cache stays small (at most 1024 x 2 KB).
_CACHED_URL_LIMIT = 2048
_KNOWN_PATHS = 64  # per intercepted tunnel


@functools.lru_cache(maxsize=1024)
def _parse_absolute(target: bytes) -> RequestTarget:
    url = target.decode("ascii", "replace")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadRequest(
            f"egress: the proxy takes absolute http:// or https:// URLs, not {url[:200]!r}"
        )
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise BadRequest(f"egress: bad port in {url[:200]!r}") from None
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    netloc = parts.netloc.encode()
    return RequestTarget(parts.scheme, parts.hostname, port, url, path.encode(), netloc)


def tunnel_target(scheme: str, host: str, port: int) -> TargetOf:
    """Requests inside a CONNECT: origin-form, to the tunnel's host."""
    shown = host if ":" not in host else f"[{host}]"
    default = 443 if scheme == "https" else 80
    base = f"{scheme}://{shown}" + ("" if port == default else f":{port}")

    known: dict[bytes, RequestTarget] = {}  # the tunnel's paths seen so far (bounded)

    def target_of(request: Head) -> RequestTarget:
        path = request.target
        target = known.get(path)
        if target is not None:
            return target
        if not path.startswith(b"/"):
            raise BadRequest("egress: requests inside a tunnel must use a /path target")
        url = base + path.decode("ascii", "replace")
        target = RequestTarget(scheme, host, port, url, path, None)
        if len(path) <= _CACHED_URL_LIMIT:
            if len(known) >= _KNOWN_PATHS:
                known.clear()
            known[path] = target
        return target

    return target_of

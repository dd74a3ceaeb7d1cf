"""The gateway front's reading of a request target: its path and ?details= as aiohttp's
router and request read them, and which call route or document it names."""

from __future__ import annotations

from aiohttp.http_parser import _has_authority
from yarl import URL

from daemon.gateway.front_types import Request
from daemon.gateway.step_calls import wants_details

OPENAPI_TEXT = "/openapi.json"


def wants_details_of(request: Request) -> bool:
    """?details= of the request target, read as aiohttp's `request.query` reads it."""
    if b"?" not in request.url:
        return False
    url = _yarl_url(request.url.decode("utf-8", "surrogateescape"), request.method)
    return wants_details(url.query.get("details", ""))


def call_route(path_safe: str) -> tuple[str, str | None] | None:
    """(script, function) of a POST to a function's call route, (script, None) of a
    code step's run, else None."""
    parts = path_safe.split("/")
    if len(parts) < 5 or parts[1] != "v1" or parts[2] != "scripts" or not _segment(parts[3]):
        return None
    if len(parts) == 6 and parts[4] == "functions" and _segment(parts[5]):
        return _unquote(parts[3]), _unquote(parts[5])
    if len(parts) == 5 and parts[4] == "run":
        return _unquote(parts[3]), None
    return None


def is_document(path: str) -> bool:
    """/openapi.json or /v1/scripts/{script}/openapi.json (any method: aiohttp
    answers the ones they do not take)."""
    if path == OPENAPI_TEXT:
        return True
    parts = path.split("/")
    return len(parts) == 5 and parts[1:3] == ["v1", "scripts"] and parts[4] == "openapi.json"


def _segment(text: str) -> bool:
    """A `{name}` of aiohttp's router: not empty, no braces (slashes are split off)."""
    return bool(text) and "{" not in text and "}" not in text


def _unquote(text: str) -> str:
    if "%" not in text:
        return text
    return text.replace("%2F", "/").replace("%25", "%")


def request_paths(request: Request) -> tuple[str, str]:
    """(path_safe, path) of the request target, as aiohttp's router and
    `request.path` see them; plain ASCII paths without escapes skip yarl.
    Raises ValueError for a target aiohttp refuses (400)."""
    raw = request.url
    if raw[:1] == b"/" and b"%" not in raw and raw.isascii():
        # aiohttp's parser ends the path at the first "?", else at the first "#"
        # (a "#" before the "?" stays in the path, as in yarl_url)
        end = raw.find(b"?")
        if end == -1:
            end = raw.find(b"#")
        path = (raw if end == -1 else raw[:end]).decode("ascii")
        return path, path
    url = _yarl_url(raw.decode("utf-8", "surrogateescape"), request.method)
    return url.path_safe, url.path


def _yarl_url(target: str, method: str) -> URL:
    """The relative URL aiohttp's parser and request build for a request target."""
    if target.startswith("/"):  # origin-form
        path, fragment = target, ""
        query_at = target.find("?")
        end = target.find("#", query_at + 1 if query_at != -1 else 0)
        if end != -1:
            path, fragment = target[:end], target[end + 1 :]
        query = ""
        if query_at != -1:
            path, query = path[:query_at], path[query_at + 1 :]
        return URL.build(path=path, query_string=query, fragment=fragment, encoded=True)
    if target == "*" and method == "OPTIONS":
        return URL(target, encoded=True)
    if not _has_authority(target):
        raise ValueError(target)
    url = URL(target, encoded=True)
    if url.raw_host is None:
        raise ValueError(target)
    return url.relative()

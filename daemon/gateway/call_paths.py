"""The gateway front's reading of a request target: its path and ?details= as aiohttp's
router and request read them, which call route or document it names, and whether the
aiohttp app serves it (`Target`, read once per target text: `Targets`)."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp.http_parser import _has_authority
from yarl import URL

from daemon.gateway.front_types import Request
from daemon.gateway.step_calls import wants_details

OPENAPI_TEXT = "/openapi.json"
# Served by the aiohttp app: uploads, the asynchronous calls' /v1/executions/{id}, and
# the documents (is_document).
BRIDGED_TEXT = ("/v1/uploads/", "/v1/executions/")
_BRIDGED = tuple(prefix.encode() for prefix in BRIDGED_TEXT)
_OPENAPI = OPENAPI_TEXT.encode()


@dataclass(frozen=True, slots=True)
class Target:
    """What a request target names: `bridged` when the aiohttp app serves it; else
    its paths as aiohttp reads them (`path_safe` None: a target aiohttp refuses, 400)
    and the call route of `path_safe` (`call_route`)."""

    bridged: bool
    path_safe: str | None
    path: str
    route: tuple[str, str | None] | None


def read_target(raw: bytes, method: str) -> Target:
    """The reading of request target `raw` (the request's `method` matters only for
    `*`, which is not origin-form)."""
    bridged = False
    if b"%" not in raw:  # plain: judged on its bytes, before and whatever its paths
        path_bytes = raw.split(b"?", 1)[0]
        bridged = path_bytes.startswith(_BRIDGED) or (
            path_bytes.endswith(_OPENAPI) and is_document(path_bytes.decode("latin-1"))
        )
    try:
        path_safe, path = target_paths(raw, method)
    except ValueError:
        return Target(bridged, None, "", None)
    if b"%" in raw:
        bridged = path_safe.startswith(BRIDGED_TEXT) or is_document(path_safe)
    return Target(bridged, path_safe, path, call_route(path_safe))


class Targets:
    """`read_target` of the targets seen lately, by their bytes: clients call the
    same few URLs over and over, and a hit is one dict lookup where the reading
    costs a dozen calls. Only origin-form targets (their reading does not depend on
    the method) up to `max_url` bytes are kept, at most `size` of them (the lot is
    dropped when full: a client sending every URL once costs a reading each, as
    without the cache)."""

    def __init__(self, size: int = 256, max_url: int = 1024) -> None:
        self.size = size
        self.max_url = max_url
        self._seen: dict[bytes, Target] = {}

    def of(self, request: Request) -> Target:
        raw = request.url
        target = self._seen.get(raw)
        if target is not None:
            return target
        target = read_target(raw, request.method)
        if raw[:1] == b"/" and len(raw) <= self.max_url:
            seen = self._seen
            if len(seen) >= self.size:
                seen.clear()
            seen[raw] = target
        return target


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


def target_paths(raw: bytes, method: str) -> tuple[str, str]:
    """(path_safe, path) of request target `raw`, as aiohttp's router and
    `request.path` see them; plain ASCII paths without escapes skip yarl.
    Raises ValueError for a target aiohttp refuses (400)."""
    if raw[:1] == b"/" and b"%" not in raw and raw.isascii():
        # aiohttp's parser ends the path at the first "?", else at the first "#"
        # (a "#" before the "?" stays in the path, as in yarl_url)
        end = raw.find(b"?")
        if end == -1:
            end = raw.find(b"#")
        path = (raw if end == -1 else raw[:end]).decode("ascii")
        return path, path
    url = _yarl_url(raw.decode("utf-8", "surrogateescape"), method)
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

"""The admin API's HTTP plumbing shared by its route modules (admin_api,
admin_calls): the app keys, JSON answers and bodies, and who the caller is.

The caller is the socket peer's uid (SO_PEERCRED) turned into a user name: that
is "added by", "deployed by" and a key's "created by".
"""

from __future__ import annotations

import pwd
import socket
import struct
from collections.abc import Awaitable, Callable
from functools import lru_cache
from typing import Any

import orjson
from aiohttp import web

from daemon.build.catalogue import Catalogue
from daemon.config.daemon_config import Config
from daemon.core.errors import BadRequest
from daemon.lifecycle.actions import Lifecycle

__all__ = [
    "CATALOGUE", "CHUNK", "CONFIG", "JSON_MAX", "LIFECYCLE", "Handler", "body_json", "caller",
    "json_response", "lifecycle", "user_name",
]  # fmt: skip

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
LIFECYCLE = web.AppKey("lifecycle", Lifecycle)
CONFIG = web.AppKey("config", Config)
CATALOGUE = web.AppKey("catalogue", Catalogue)
JSON_MAX = 4 << 20
CHUNK = 1 << 20


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


@lru_cache(maxsize=256)
def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid:{uid}"


def caller(request: web.Request) -> str:
    """The user at the other end of the unix socket."""
    sock = request.transport.get_extra_info("socket") if request.transport else None
    if sock is None or sock.family != socket.AF_UNIX:
        return "unknown"
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", raw)
    return user_name(uid)


async def body_json(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise BadRequest("the request body must be a JSON object")
    return doc


def lifecycle(request: web.Request) -> Lifecycle:
    return request.app[LIFECYCLE]

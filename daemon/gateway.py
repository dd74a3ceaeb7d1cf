"""The public HTTP gateway on the `--listen` address (calls come in the runtimes issue).

For now it answers `GET /healthz` and tells callers of a function that calls are
not served yet, in the gateway's error shape, so the listen address is real and
checked from the start.
"""

from __future__ import annotations

import orjson
from aiohttp import web

from daemon.lifecycle import Lifecycle
from daemon.models import DEPLOYED

LIFECYCLE = web.AppKey("lifecycle", Lifecycle)


def _error(status: int, kind: str, message: str) -> web.Response:
    body = orjson.dumps({"error": {"type": kind, "message": message}})
    return web.Response(body=body, status=status, content_type="application/json")


async def healthz(request: web.Request) -> web.Response:
    return web.Response(body=b'{"ok":true}', content_type="application/json")


async def call(request: web.Request) -> web.Response:
    lc = request.app[LIFECYCLE]
    name = request.match_info["script"]
    script = await lc.ctx.db(lc.ctx.store.get_script, name)
    if script is None:
        return _error(404, "not_found", f"no script named {name!r}")
    if script.status != DEPLOYED:
        return _error(503, "not_deployed", f"script {name!r} is {script.status}")
    return _error(503, "not_served", "calls are not served yet: no replicas in this build")


def make_gateway(lc: Lifecycle) -> web.Application:
    app = web.Application(client_max_size=1 << 20)
    app[LIFECYCLE] = lc
    app.router.add_get("/healthz", healthz)
    app.router.add_post("/v1/scripts/{script}/functions/{function}", call)
    return app

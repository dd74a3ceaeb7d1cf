"""Admin routes of asynchronous calls: a script's calls (`?filter=dead` for its dead
letters), one call, running a dead letter again, and the script's callback secret.

    GET  /v1/scripts/{name}/async-calls?filter=&limit=   newest first
    POST /v1/executions/{id}/retry                        a dead letter queued again
    GET  /v1/scripts/{name}/callback-secret               shown (made on first use)
    POST /v1/scripts/{name}/callback-secret               rotated: a new one signs from now on

`GET /v1/executions/{id}` (call_routes.py) shows an async call by its id too.
"""

from __future__ import annotations

import time

from aiohttp import web

from daemon.admin.http import json_response, lifecycle
from daemon.admin.openapi import Route
from daemon.core.async_calls import ASYNC_STATUSES, DEAD, AsyncCall
from daemon.core.errors import BadRequest, Conflict, NotFound

__all__ = ["ROUTES", "async_call_json"]

FILTERS = (*ASYNC_STATUSES, DEAD)
LIMIT_DEFAULT, LIMIT_MAX = 50, 1000


def async_call_json(call: AsyncCall) -> web.Response:
    return json_response({"async": True, **call.to_json()})


def _filter(request: web.Request) -> str | None:
    raw = request.query.get("filter") or None
    if raw is not None and raw not in FILTERS:
        raise BadRequest(f"filter = {raw!r} is not allowed: one of {', '.join(FILTERS)}")
    return raw


def _limit(request: web.Request) -> int:
    raw = request.query.get("limit", str(LIMIT_DEFAULT))
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= LIMIT_MAX:
        raise BadRequest(f"limit = {raw!r} is not allowed: an integer from 1 to {LIMIT_MAX}")
    return int(raw)


async def list_async_calls(request: web.Request) -> web.Response:
    lc, wanted, limit = lifecycle(request), _filter(request), _limit(request)
    script = await lc.get(request.match_info["name"])
    calls = await lc.ctx.db(lc.ctx.store.list_async_calls, script.id, wanted, limit)
    return json_response({"script": script.name, "calls": [c.summary() for c in calls]})


async def retry_async_call(request: web.Request) -> web.Response:
    lc, call_id = lifecycle(request), request.match_info["id"]
    store = lc.ctx.store
    call = await lc.ctx.db(store.get_async_call, call_id)
    if call is None:
        raise NotFound(f"no asynchronous call with id {call_id!r}")
    if not await lc.ctx.db(store.retry_dead_async_call, call_id, int(time.time() * 1000)):
        raise Conflict(f"execution {call_id!r} is {call.status} and not a dead letter: "
                       "only a call that failed every attempt or expired runs again")  # fmt: skip
    again = await lc.ctx.db(store.get_async_call, call_id)
    assert again is not None
    return async_call_json(again)


async def get_callback_secret(request: web.Request) -> web.Response:
    lc = lifecycle(request)
    script = await lc.get(request.match_info["name"])
    secret = await lc.ctx.db(lc.ctx.store.callback_secret, script.id)
    return json_response({"script": script.name, "secret": secret})


async def rotate_callback_secret(request: web.Request) -> web.Response:
    lc = lifecycle(request)
    script = await lc.get(request.match_info["name"])
    secret = await lc.ctx.db(lc.ctx.store.rotate_callback_secret, script.id)
    return json_response({"script": script.name, "secret": secret, "rotated": True})


ROUTES: tuple[Route, ...] = (
    Route("GET", "/v1/scripts/{name}/async-calls", list_async_calls,
          "A script's asynchronous calls, newest first (filter: a status, or dead)", None,
          "AsyncCallList", query=("filter", "limit")),
    Route("POST", "/v1/executions/{id}/retry", retry_async_call,
          "Queue a dead letter again (409 for any other call)", None, "AsyncCall"),
    Route("GET", "/v1/scripts/{name}/callback-secret", get_callback_secret,
          "The secret that signs the script's callbacks (made on first use)", None,
          "CallbackSecret"),
    Route("POST", "/v1/scripts/{name}/callback-secret", rotate_callback_secret,
          "A new callback secret; the old one no longer signs", None, "CallbackSecret"),
)  # fmt: skip

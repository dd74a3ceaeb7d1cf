"""Asynchronous calls on the gateway's aiohttp app.

    POST   /v1/scripts/{script}/functions/{function}   with Prefer: respond-async -> 202
    POST   /v1/scripts/{script}/run                     (the same, for a code step)
    GET    /v1/executions/{id}                          the call: status, attempts, times,
                                                        result or error, callback deliveries
    DELETE /v1/executions/{id}                          cancel a queued call (409 otherwise)

The two POST routes wrap the synchronous handlers: without the Prefer header they are
the handlers themselves. The lean front (daemon/gateway/calls.py) answers the POSTs
itself with the same `AsyncIntake`, and hands /v1/executions/ to this app
(daemon/gateway/bridge.py). The execution routes take a key of the call's script, as
the call routes do (401, 429); a call of another script is not found (404).
"""

from __future__ import annotations

import asyncio

import orjson
from aiohttp import web

from daemon.gateway.app import JSON, Gateway, error_response, refusal
from daemon.gateway.async_intake import AsyncIntake, Reply, wants_async
from daemon.gateway.step_calls import wants_details
from daemon.gateway.step_route import StepRoute
from daemon.keys.checker import KeyOk

__all__ = ["AsyncRoutes"]


def to_response(reply: Reply) -> web.Response:
    return web.Response(body=reply.body, status=reply.status, headers=dict(reply.headers))


class AsyncRoutes:
    def __init__(self, gateway: Gateway, steps: StepRoute, intake: AsyncIntake) -> None:
        self.gateway = gateway
        self.steps = steps
        self.intake = intake

    async def call(self, request: web.Request) -> web.Response:
        if not wants_async(request.headers.get("Prefer")):
            return await self.gateway.call(request)
        return await self._accept(request, request.match_info["function"])

    async def run(self, request: web.Request) -> web.Response:
        if not wants_async(request.headers.get("Prefer")):
            return await self.steps.run(request)
        return await self._accept(request, None)

    async def _accept(self, request: web.Request, function: str | None) -> web.Response:
        admitted = await self.gateway.admit(request)
        if isinstance(admitted, web.Response):
            return admitted
        serving, key = admitted
        body = await self._body(request)
        details = wants_details(request.query.get("details", ""))
        reply = await self.intake.accept(
            serving, function, key, body, request.headers.get("Idempotency-Key"),
            request.headers.get("X-Callback-Url"), details,
        )  # fmt: skip
        return to_response(reply)

    async def _body(self, request: web.Request) -> bytes | None:
        """The body, or None past gateway.max_body_bytes."""
        length = request.content_length
        if length is not None and length > self.gateway.max_body_bytes:
            return None
        try:
            return await request.read()
        except web.HTTPRequestEntityTooLarge:
            return None

    # --- /v1/executions/{id} -----------------------------------------------------------
    async def get(self, request: web.Request) -> web.Response:
        found = await self._find(request)
        if isinstance(found, web.Response):
            return found
        call = await asyncio.to_thread(self.gateway.store.get_async_call, found)
        if call is None:  # deleted with its script just now
            return _not_found(found)
        return _json(200, orjson.dumps(call.to_json()))

    async def delete(self, request: web.Request) -> web.Response:
        found = await self._find(request)
        if isinstance(found, web.Response):
            return found
        store = self.gateway.store
        now_ms = int(self.intake.clock() * 1000)
        canceled = await asyncio.to_thread(store.cancel_async_call, found, now_ms)
        call = await asyncio.to_thread(store.get_async_call, found)
        if call is None:
            return _not_found(found)
        if not canceled:
            message = f"execution {found!r} is {call.status}: only a queued call can be canceled"
            return error_response(409, "conflict", message)
        return _json(200, orjson.dumps(call.to_json()))

    async def _find(self, request: web.Request) -> str | web.Response:
        """The id of the URL when it names an async call of the key's script."""
        gateway, call_id = self.gateway, request.match_info["id"]
        check = await gateway.keys.check(request.headers.get("Authorization"),
                                         gateway.client(request))  # fmt: skip
        if type(check) is not KeyOk:
            return refusal(check)  # type: ignore[arg-type]
        call = await asyncio.to_thread(gateway.store.get_async_call, call_id)
        if call is None or call.script != check.script:
            return _not_found(call_id)
        return call_id


def _not_found(call_id: str) -> web.Response:
    return error_response(404, "not_found", f"no asynchronous call with id {call_id!r}")


def _json(status: int, body: bytes) -> web.Response:
    return web.Response(body=body, status=status, headers={"Content-Type": JSON})

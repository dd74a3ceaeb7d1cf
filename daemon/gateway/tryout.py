"""Trying a deployed script as a trusted admin, without a key: call one of its
functions or run its code step with a body already in hand.

The admin API's try routes (daemon/admin/try_routes.py) and the web console's Test
tab (daemon/console/test_tab.py) both call through here, and this goes through the
gateway's own dispatch (`Gateway.dispatch_body`, `StepRoute.run_body`): the answers,
their statuses and the execution records are the gateway's. The record's key name
is "admin:<user>". A step's run answers with its details (logs, stdout, stderr).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

import orjson
from aiohttp import web

from daemon.gateway.app import EXECUTION_HEADER, Gateway
from daemon.gateway.recorder import Call
from daemon.gateway.step_calls import STEP_FUNCTION, not_a_step
from daemon.gateway.step_route import StepRoute

__all__ = ["TryAnswer", "Tryout", "admin_key"]


def admin_key(user: str) -> str:
    """The key name an admin's try is recorded under."""
    return f"admin:{user}"


@dataclass(frozen=True)
class TryAnswer:
    """The gateway's answer to a try, as the caller would have received it, and what
    its execution record holds besides (masked as recorded)."""

    status: int
    body: bytes  # JSON, as the gateway sends it
    execution_id: str | None  # None: refused before a record existed (not deployed)
    duration_ms: float  # from the body in hand to the answer, as the admin waited
    outcome: str | None = None  # the record's status: ok, error, timeout, ... (None: none)
    logs: str = ""  # stdout, then stderr after a "[stderr]" line
    http_log: dict[str, Any] | None = None  # the outbound HTTP requests of the call


@dataclass(frozen=True)
class Tryout:
    """What trying calls through: the gateway and its step route."""

    gateway: Gateway
    steps: StepRoute

    async def call(self, script: str, function: str, body: bytes, user: str) -> TryAnswer:
        """Call `function` of `script` with the JSON object `body`."""
        started = time.perf_counter()
        gw = self.gateway
        serving = gw.routes.serving(script)
        if serving is None:
            return _answer(await gw.not_serving(script), started)
        record = gw.new_record(serving.target, function, admin_key(user))
        refused = gw.unknown_function(record, serving, function) or self._too_large(record, body)
        if refused is not None:
            return _answer(refused, started, record)
        answer = await gw.dispatch_body(record, serving, function, body)
        return _answer(answer, started, record)

    async def run(self, script: str, body: bytes, user: str) -> TryAnswer:
        """Run the code step `script` with `body` ({"inputs": {...typed...}})."""
        started = time.perf_counter()
        gw = self.gateway
        serving = gw.routes.serving(script)
        if serving is None:
            return _answer(await gw.not_serving(script), started)
        record = gw.new_record(serving.target, STEP_FUNCTION, admin_key(user))
        why = not_a_step(serving.target)
        refused = gw.reject(record, 404, "not_found", why) if why else None
        refused = refused or self._too_large(record, body)
        if refused is not None:
            return _answer(refused, started, record)
        answer = await self.steps.run_body(record, serving, body, True)
        return _answer(answer, started, record)

    def _too_large(self, record: Call, body: bytes) -> web.Response | None:
        """The 413 (recorded) of a body over gateway.max_body_bytes."""
        gw = self.gateway
        record.input_bytes = len(body)
        if len(body) <= gw.max_body_bytes:
            return None
        return gw.reject(record, 413, "payload_too_large", gw._too_large())


def _answer(response: web.Response, started: float, record: Call | None = None) -> TryAnswer:
    took = (time.perf_counter() - started) * 1000
    body = response.body if isinstance(response.body, bytes) else b""
    answer = TryAnswer(response.status, body, response.headers.get(EXECUTION_HEADER), took)
    values = record.values if record is not None else None
    if values is None:  # not recorded: refused before the record existed
        return answer
    http_log = orjson.loads(values.http_log) if values.http_log else None
    return replace(answer, outcome=values.status, logs=values.logs or "", http_log=http_log)

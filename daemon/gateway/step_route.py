"""POST /v1/scripts/{script}/run on the aiohttp app: call a code step (seed 004).

The run itself, its answers and its records are daemon/gateway/step_calls.py's,
shared with the lean front (daemon/gateway/calls.py); this is the aiohttp side:
the admission, the body and the answer objects. The other statuses are the
functions route's (daemon/gateway/app.py), in the same order of checks. A script
that is not a step answers 404 naming its route.
"""

from __future__ import annotations

from aiohttp import web

from daemon.gateway.app import EXECUTION_HEADER, JSON, Gateway
from daemon.gateway.recorder import Call
from daemon.gateway.step_calls import (
    STEP_FUNCTION,
    StepRefusal,
    not_a_step,
    run_step,
    wants_details,
)
from daemon.serving.call_errors import CallError
from daemon.serving.replica_runner import ServingVersion

__all__ = ["StepRoute"]


class StepRoute:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def run(self, request: web.Request) -> web.Response:
        admitted = await self.gateway.admit(request)
        if isinstance(admitted, web.Response):
            return admitted
        return await self.run_admitted(request, *admitted)

    async def run_admitted(
        self, request: web.Request, serving: ServingVersion, key: str, details: bool = False
    ) -> web.Response:
        """The run of a caller already admitted (the gateway's key, or the admin API's
        trusted caller); `details` as if ?details=1 was given."""
        gw = self.gateway
        record = gw.new_record(serving.target, STEP_FUNCTION, key)
        why = not_a_step(serving.target)
        if why is not None:
            return gw.reject(record, 404, "not_found", why)
        raw = await gw.read_body(request, record)
        if isinstance(raw, web.Response):
            return raw
        details = details or wants_details(request.query.get("details", ""))
        return await self.run_body(record, serving, raw, details)

    async def run_body(
        self, record: Call, serving: ServingVersion, raw: bytes, details: bool
    ) -> web.Response:
        """Run the step with the request body `raw`, read within the limit already."""
        gw = self.gateway
        outcome = await run_step(gw, serving, record, raw, details)
        if isinstance(outcome, StepRefusal):
            return gw.reject(record, outcome.status, outcome.kind, outcome.message)
        if isinstance(outcome, CallError):
            return gw.failed(record, outcome)
        headers = {"Content-Type": JSON, EXECUTION_HEADER: record.id}
        return web.Response(body=outcome.body, status=outcome.status, headers=headers)

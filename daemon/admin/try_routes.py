"""Admin routes to try a deployed script without a key (the admin is trusted):

    POST /v1/scripts/{name}/run                    a code step: {"inputs": {...typed...}}
    POST /v1/scripts/{name}/functions/{function}   a function: the JSON object payload

They go through the gateway's own dispatch (daemon/gateway/app.py, step_route.py),
so the answers, the status codes and the execution records are the gateway's;
the record's key name is "admin:<user>". A run answers with the details
(logs, logs_discarded, stdout, stderr) as the gateway's ?details=1 does.
`scriptctl run` and `scriptctl call` use them; the web console will too.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from daemon.admin.http import caller, json_response
from daemon.admin.openapi import Route
from daemon.gateway.app import Gateway
from daemon.gateway.step_route import StepRoute

__all__ = ["ROUTES", "TRY", "Tryout"]


@dataclass(frozen=True)
class Tryout:
    """What the routes call through: the gateway and its step route."""

    gateway: Gateway
    steps: StepRoute


TRY = web.AppKey("tryout", Tryout)


NO_GATEWAY = {"error": {"type": "unavailable", "message": "no gateway to call scripts through"}}


async def run_step(request: web.Request) -> web.Response:
    tryout = request.app.get(TRY)
    if tryout is None:
        return json_response(NO_GATEWAY, 503)
    name = request.match_info["name"]
    serving = tryout.gateway.routes.serving(name)
    if serving is None:
        return await tryout.gateway.not_serving(name)
    return await tryout.steps.run_admitted(request, serving, f"admin:{caller(request)}", True)


async def call_function(request: web.Request) -> web.Response:
    tryout = request.app.get(TRY)
    if tryout is None:
        return json_response(NO_GATEWAY, 503)
    name = request.match_info["name"]
    serving = tryout.gateway.routes.serving(name)
    if serving is None:
        return await tryout.gateway.not_serving(name)
    return await tryout.gateway.dispatch(request, serving, f"admin:{caller(request)}")


ROUTES: tuple[Route, ...] = (
    Route("POST", "/v1/scripts/{name}/run", run_step,
          "Run a Deployed code step as the admin (no key): outputs, logs, execution id",
          "StepRun", "StepResult"),
    Route("POST", "/v1/scripts/{name}/functions/{function}", call_function,
          "Call a function of a Deployed script as the admin (no key)", "Payload",
          "CallResult"),
)  # fmt: skip

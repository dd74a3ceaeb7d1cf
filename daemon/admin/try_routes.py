"""Admin routes to try a deployed script without a key (the admin is trusted):

    POST /v1/scripts/{name}/run                    a code step: {"inputs": {...typed...}}
    POST /v1/scripts/{name}/functions/{function}   a function: the JSON object payload

They go through the gateway's own dispatch (daemon/gateway/app.py, step_route.py),
so the answers, the status codes and the execution records are the gateway's;
the record's key name is "admin:<user>". A run answers with the details
(logs, logs_discarded, stdout, stderr) as the gateway's ?details=1 does.
`scriptctl run` and `scriptctl call` use them; the web console's Test tab calls the
same `Tryout` (daemon/gateway/tryout.py) with the body of its form.
"""

from __future__ import annotations

from aiohttp import web

from daemon.admin.http import caller, json_response
from daemon.admin.openapi import Route
from daemon.gateway.tryout import Tryout, admin_key

__all__ = ["ROUTES", "TRY", "Tryout"]

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
    return await tryout.steps.run_admitted(request, serving, admin_key(caller(request)), True)


async def call_function(request: web.Request) -> web.Response:
    tryout = request.app.get(TRY)
    if tryout is None:
        return json_response(NO_GATEWAY, 503)
    name = request.match_info["name"]
    serving = tryout.gateway.routes.serving(name)
    if serving is None:
        return await tryout.gateway.not_serving(name)
    return await tryout.gateway.dispatch(request, serving, admin_key(caller(request)))


ROUTES: tuple[Route, ...] = (
    Route("POST", "/v1/scripts/{name}/run", run_step,
          "Run a Deployed code step as the admin (no key): outputs, logs, execution id",
          "StepRun", "StepResult"),
    Route("POST", "/v1/scripts/{name}/functions/{function}", call_function,
          "Call a function of a Deployed script as the admin (no key)", "Payload",
          "CallResult"),
)  # fmt: skip

"""`POST /v1/console/link`: a one-time sign-in link to the web console for the caller.

Asked over the unix socket, so the link's session acts as the socket peer's unix
user (the same identity as every admin route). The console lives beside the admin
API (daemon/console/); main.py hands its link issuer over as a plain callable.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from daemon.admin.http import caller, json_response
from daemon.admin.openapi import Route

__all__ = ["LINKS", "ROUTES", "LinkIssuer"]

LinkIssuer = Callable[[str], dict[str, Any]]  # user -> {"url", "user", "expires_in_s"}
LINKS: web.AppKey[LinkIssuer] = web.AppKey("console_links")

DISABLED = {
    "error": {
        "type": "not_found",
        "message": "the web console is disabled (console.enabled = false in the config)",
    }
}


async def post_link(request: web.Request) -> web.Response:
    issue = request.app.get(LINKS)
    if issue is None:
        return json_response(DISABLED, 404)  # no console on this daemon
    return json_response(issue(caller(request)), 201)


ROUTES: tuple[Route, ...] = (
    Route("POST", "/v1/console/link", post_link,
          "A one-time sign-in link to the web console (single use, 10 minutes)", None,
          "ConsoleLink", 201),
)  # fmt: skip

"""A script's tabs Overview, Deployment History and Endpoint (seed 001), and the
rename of a deployment version."""

from __future__ import annotations

import contextlib
from typing import Any

from aiohttp import web

from daemon.console import messages
from daemon.console.pages import confirmation, menu, status_class
from daemon.console.web import act, form, lifecycle, render, session, user
from daemon.core.errors import Conflict
from daemon.core.models import DEPLOYED, DEPLOYING, DRAFT, PHASES, Script, Version
from daemon.lifecycle import call_services
from daemon.lifecycle.actions import Lifecycle
from daemon.lifecycle.status_table import allows
from daemon.serving.launcher import workers_for

__all__ = ["add_routes", "tab_context"]

BUILD_LOG_TAIL = 4096  # bytes of the build log shown while a deploy runs
TABS = (
    ("overview", "Overview", ""),
    ("history", "Deployment History", "/history"),
    ("endpoint", "Endpoint", "/endpoint"),
    ("keys", "API Keys", "/keys"),
    ("executions", "Executions", "/executions"),
    ("test", "Test", "/test"),
    ("monitoring", "Monitoring", "/monitoring"),
)


async def tab_context(request: web.Request, tab: str) -> dict[str, Any]:
    """What every tab shows above itself: the script, its status and the tab bar."""
    lc = lifecycle(request)
    script = await lc.get(request.match_info["name"])
    base = f"/scripts/{script.name}"
    progress = await _progress(lc, script) if script.status == DEPLOYING else None
    return {
        "progress": progress,
        "script": script,
        "status_class": status_class(script.status),
        "tabs": [(key, label, base + path) for key, label, path in TABS],
        "tab": tab,
        "base": base,
        "menu": menu(script.status),
        "can_redeploy": allows(script.status, "redeploy"),
        "confirm": None,
        "polling": script.status == DEPLOYING,
    }


async def _progress(lc: Lifecycle, script: Script) -> dict[str, Any] | None:
    """The deploy in progress: its phase and the end of its build log."""
    version = await lc.deployment(script)
    if version is None:
        return None
    tail = await call_services.build_log_tail(lc, script, version.number, BUILD_LOG_TAIL)
    return {"version": version.number, "phase": version.phase, "phases": PHASES, "log": tail}


async def overview(request: web.Request) -> web.Response:
    context = await tab_context(request, "overview")
    script: Script = context["script"]
    lc = lifecycle(request)
    context["deployment"] = await lc.deployment(script)
    config = lc.ctx.config
    context["profile"] = config.profile(script.resources.profile) or config.default_profile
    context["workers"] = workers_for(context["profile"].vcpus, script.settings.workers_per_replica)
    confirm = request.query.get("confirm")
    if confirm:
        context["confirm"] = await confirmation(lc, script.name, confirm, context["base"])
    if request.headers.get("HX-Request") and request.headers.get("HX-Target") == "status":
        response = render(request, "_status.html", context)
        if script.status != DEPLOYING:  # done: the whole page (actions, details) changes
            _say_how_it_ended(request, script, context["deployment"])
            response.headers["HX-Refresh"] = "true"
        return response
    return render(request, "overview.html", context)


def _say_how_it_ended(request: web.Request, script: Script, version: Version | None) -> None:
    if script.status == DEPLOYED:
        session(request).flash(messages.DEPLOYED)
    elif version is not None and version.failure_reason:
        session(request).flash(f"Deployment failed: {version.failure_reason}", "error")


async def history(request: web.Request) -> web.Response:
    context = await tab_context(request, "history")
    script: Script = context["script"]
    versions, _events = await lifecycle(request).history(script.name)
    context.update(
        versions=versions,
        draft=script.status == DRAFT,
        draft_text=messages.DRAFT_HISTORY,
        running=script.current_version if script.status == DEPLOYED else None,
        renaming=_int(request.query.get("rename")),
    )
    return render(request, "history.html", context)


def _int(text: str | None) -> int | None:
    return int(text) if text and text.isdigit() else None


async def rename_version(request: web.Request) -> web.StreamResponse:
    name, number = request.match_info["name"], int(request.match_info["number"])
    new_name = (await form(request)).get("display_name", "").strip()
    renamed = lifecycle(request).rename_version(
        user(request), name, number, {"display_name": new_name}
    )
    done = f"Version v{number} renamed to {new_name}."
    return await act(request, renamed, done, f"/scripts/{name}/history")


async def endpoint(request: web.Request) -> web.Response:
    context = await tab_context(request, "endpoint")
    script: Script = context["script"]
    context["not_deployed"] = messages.NOT_DEPLOYED
    context["endpoint"] = None
    if script.status == DEPLOYED:
        # Undeployed between the two reads: the not-deployed prompt.
        with contextlib.suppress(Conflict):
            context["endpoint"] = await call_services.endpoint(lifecycle(request), script.name)
    return render(request, "endpoint.html", context)


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/scripts/{name}", overview)
    router.add_get("/scripts/{name}/history", history)
    router.add_post(r"/scripts/{name}/versions/{number:\d+}/rename", rename_version)
    router.add_get("/scripts/{name}/endpoint", endpoint)

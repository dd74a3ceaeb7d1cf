"""The Manage Custom Scripts list: search, the status labels, the Actions menu, the
confirmation dialogs and the actions themselves (deploy, undeploy, delete; export is
export_pages.py).

A dialog is a page of its own (`?confirm=ACTION&script=NAME` on the list, or on the
script's overview) rendered with the dialog open over it, so every action works
with the keyboard and without JavaScript; Cancel goes back to where it was opened.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from daemon.console import messages
from daemon.console.web import act, back_to, form, lifecycle, render, session, user
from daemon.core.models import DEPLOYED, DEPLOYING, DRAFT, FAILED, READY, Script
from daemon.lifecycle.actions import Lifecycle
from daemon.lifecycle.status_table import allows

__all__ = ["add_routes", "confirmation", "menu", "status_class"]

MENU = ("deploy", "undeploy", "export", "delete")
# The seed's five statuses, each its own colour (console.css .badge.*).
STATUS_CLASSES = {
    DRAFT: "draft",
    DEPLOYING: "deploying",
    READY: "ready",
    DEPLOYED: "deployed",
    FAILED: "failed",
}


def status_class(status: str) -> str:
    return STATUS_CLASSES.get(status, "draft")


def menu(status: str) -> list[str]:
    """The Actions menu: exactly what the status allows, in the seed's order."""
    return [a for a in MENU if allows(status, a)]


async def failure_reason(lc: Lifecycle, script: Script) -> str | None:
    if script.status != FAILED:
        return None
    version = await lc.deployment(script)
    return version.failure_reason if version else None


async def list_page(request: web.Request) -> web.Response:
    lc = lifecycle(request)
    search = request.query.get("search", "").strip()
    scripts = await lc.scripts(search or None)
    rows = [
        {"script": s, "menu": menu(s.status), "reason": await failure_reason(lc, s)}
        for s in scripts
    ]
    context: dict[str, Any] = {"rows": rows, "search": search, "confirm": None}
    confirm = request.query.get("confirm")
    if confirm:
        context["confirm"] = await confirmation(lc, request.query.get("script", ""), confirm, "/")
    if request.headers.get("HX-Request") and request.headers.get("HX-Target") == "script-table":
        return render(request, "_script_table.html", context)
    return render(request, "list.html", context)


async def confirmation(lc: Lifecycle, name: str, action: str, back: str) -> dict[str, Any]:
    """The dialog's words for `action` on script `name`."""
    if action not in ("deploy", "undeploy", "delete"):
        raise web.HTTPBadRequest(text=f"no confirmation for {action!r}")
    script = await lc.get(name)
    return {"action": action, "script": script, "back": back, **messages.CONFIRM[action]}


async def post_deploy(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    back = await _back(request)
    started = lifecycle(request).deploy(user(request), name)
    return await act(request, started, messages.DEPLOY_STARTED.format(name=name), back)


async def post_undeploy(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    back = await _back(request)
    done = lifecycle(request).undeploy(user(request), name)
    return await act(request, done, messages.UNDEPLOYED, back)


async def post_delete(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    typed = (await form(request)).get("confirm_name", "").strip()
    if typed != name:
        session(request).flash(messages.DELETE_NAME_MISMATCH.format(name=name), "error")
        return back_to(f"/?confirm=delete&script={name}")
    done = lifecycle(request).delete(user(request), name)
    return await act(request, done, messages.DELETED.format(name=name), "/")


async def _back(request: web.Request) -> str:
    """Where to go after an action: the page the form names, if it is one of ours."""
    back = (await form(request)).get("back", "/")
    return back if back.startswith("/") and not back.startswith("//") else "/"


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/", list_page)
    router.add_post("/scripts/{name}/deploy", post_deploy)
    router.add_post("/scripts/{name}/undeploy", post_undeploy)
    router.add_post("/scripts/{name}/delete", post_delete)

"""A script's tabs API Keys and Executions, and one execution's details."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from daemon.console import messages
from daemon.console.script_pages import tab_context
from daemon.console.web import act, form, lifecycle, render, session, user
from daemon.core.errors import ScriptdError
from daemon.lifecycle import call_services

__all__ = ["add_routes"]

STATUSES = ("ok", "error", "timeout", "oom", "crashed", "rejected")
EXECUTIONS_SHOWN = 100


async def keys_page(request: web.Request, extra: dict[str, Any] | None = None) -> web.Response:
    context = await tab_context(request, "keys")
    search = request.query.get("search", "").strip()
    _, keys = await call_services.list_keys(lifecycle(request), context["script"].name, search)
    context.update(keys=keys, search=search, new_key=None, key_warning=messages.KEY_WARNING)
    context["delete_key"] = request.query.get("delete")
    if context["delete_key"]:
        words = messages.CONFIRM["delete_key"]
        context["confirm_key"] = {**words, "text": words["text"].format(name=context["delete_key"])}
    context.update(extra or {})
    return render(request, "keys.html", context)


async def create_key(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    key_name = (await form(request)).get("key_name", "").strip() or None
    try:
        made = await call_services.create_key(lifecycle(request), user(request), name, key_name)
    except ScriptdError as exc:
        session(request).flash(exc.message, "error")
        return web.HTTPSeeOther(f"/scripts/{name}/keys")
    session(request).flash(messages.KEY_CREATED)
    # Rendered, not redirected: the whole key exists only in this answer.
    return await keys_page(request, {"new_key": made})


async def delete_key(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    key_name = (await form(request)).get("key_name", "")
    done = call_services.delete_key(lifecycle(request), user(request), name, key_name)
    location = f"/scripts/{name}/keys"
    return await act(request, done, messages.KEY_DELETED.format(key=key_name), location)


async def executions_page(request: web.Request) -> web.Response:
    context = await tab_context(request, "executions")
    status = request.query.get("status") or None
    if status not in (None, *STATUSES):
        status = None
    _, rows = await call_services.executions(
        lifecycle(request), context["script"].name, EXECUTIONS_SHOWN, status=status
    )
    context.update(rows=rows, status_filter=status or "", statuses=STATUSES)
    return render(request, "executions.html", context)


async def execution_page(request: web.Request) -> web.Response:
    script, row = await call_services.execution(lifecycle(request), request.match_info["id"])
    if script.name != request.match_info["name"]:
        raise web.HTTPNotFound()
    context = await tab_context(request, "executions")
    details = row.details or {}
    context.update(
        row=row,
        inputs=details.get("inputs"),
        step_logs=details.get("logs") or [],
        logs_discarded=details.get("logs_discarded") or 0,
        http_log=row.http_log,
    )
    return render(request, "execution.html", context)


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/scripts/{name}/keys", keys_page)
    router.add_post("/scripts/{name}/keys", create_key)
    router.add_post("/scripts/{name}/keys/delete", delete_key)
    router.add_get("/scripts/{name}/executions", executions_page)
    router.add_get("/scripts/{name}/executions/{id}", execution_page)

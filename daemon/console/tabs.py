"""A script's tabs API Keys and Executions, and one execution's details."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from daemon.console import messages
from daemon.console.script_pages import tab_context
from daemon.console.web import act, form, lifecycle, render, session, user
from daemon.core.errors import ScriptdError
from daemon.gateway.step_calls import STEP_FUNCTION
from daemon.lifecycle import call_services
from daemon.lifecycle.monitoring import EXECUTION_STATUSES

__all__ = ["add_routes"]

STATUSES = EXECUTION_STATUSES
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
    script = context["script"]
    query = request.query
    status = query.get("status") or None
    if status not in (None, *STATUSES):
        status = None
    functions = [*script.functions, *([STEP_FUNCTION] if script.settings.step else [])]
    function = query.get("function") or None
    if function not in (None, *functions):
        function = None
    since, until = utc_time(query.get("from", "")), utc_time(query.get("to", ""), end=True)
    bad = [f"{k} = {query[k]!r}" for k, v in (("from", since), ("to", until)) if v is None]
    _, rows = await call_services.executions(
        lifecycle(request), script.name, EXECUTIONS_SHOWN, until or None, status,
        since or None, function,
    )  # fmt: skip
    context.update(
        rows=rows, status_filter=status or "", statuses=STATUSES, functions=functions,
        function_filter=function or "", time_from=query.get("from", "") if since else "",
        time_to=query.get("to", "") if until else "",
        filtered=bool(status or function or since or until), shown=EXECUTIONS_SHOWN,
        bad_times=bad,
    )  # fmt: skip
    return render(request, "executions.html", context)


def utc_time(text: str, end: bool = False) -> str | None:
    """A form's date and time (UTC, as <input type="datetime-local"> sends it) as the
    records' ISO text; "" when none was given, None when it is not one. The `end` of
    a range given to the minute takes in that whole minute."""
    text = text.strip()
    if not text:
        return ""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    if end and len(text) == len("2026-12-05T00:20"):
        moment += timedelta(minutes=1)
    return moment.isoformat(timespec="milliseconds") + "Z"


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

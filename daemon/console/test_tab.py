"""A script's Test tab: call a function or run a code step with typed inputs or a JSON
body, and see the answer (the seed's "Test" of the API node).

The call goes through daemon/lifecycle/try_services.py and the gateway's `Tryout`,
the admin API's try path: the same answers and execution records as a caller with a
key would get, recorded under "admin:<user>". The form posts and the answer is
rendered in the page, so it works without JavaScript.
"""

from __future__ import annotations

import json
import re
from typing import Any

from aiohttp import web

from daemon.console.script_pages import tab_context
from daemon.console.web import form, lifecycle, render, user
from daemon.core.errors import BadRequest
from daemon.gateway.tryout import TryAnswer, Tryout
from daemon.lifecycle import try_services
from daemon.lifecycle.try_services import TryTargets

__all__ = ["TRYOUT", "add_routes"]

TRYOUT = web.AppKey("tryout", Tryout)
# A step's answer carries its logs and output: shown in their own sections.
_APART = ("logs", "logs_discarded", "stdout", "stderr")


async def test_page(
    request: web.Request, typed: dict[str, str] | None = None, extra: dict[str, Any] | None = None
) -> web.Response:
    context = await tab_context(request, "test")
    _, targets = await try_services.try_targets(lifecycle(request), context["script"].name)
    source = typed if typed is not None else dict(request.query)
    chosen = _chosen(targets, source.get("function", ""))
    context.update(
        targets=targets,
        function=chosen,
        fields=targets.fields[chosen] if targets and chosen else [],
        mode="json" if source.get("mode") == "json" else "typed",
        values=typed or {},
        body_text=(typed or {}).get("body", "{}"),
        answer=None,
        refusal=None,
        gateway_ready=TRYOUT in request.app,
    )
    context.update(extra or {})
    return render(request, "test.html", context)


def _chosen(targets: TryTargets | None, wanted: str) -> str:
    if targets is None or not targets.names:
        return ""
    return wanted if wanted in targets.fields else targets.names[0]


async def run_test(request: web.Request) -> web.Response:
    typed = await form(request)
    tryout = request.app.get(TRYOUT)
    if tryout is None:
        return await test_page(request, typed, {"refusal": "No gateway to call scripts through."})
    mode: try_services.Mode = "json" if typed.get("mode") == "json" else "typed"
    try:
        answer = await try_services.try_call(
            lifecycle(request), tryout, user(request), request.match_info["name"],
            typed.get("function", ""), mode, typed,
        )  # fmt: skip
    except BadRequest as exc:  # what was typed: said beside the form, nothing was called
        return await test_page(request, typed, {"refusal": exc.message})
    return await test_page(request, typed, {"answer": _shown(answer)})


def _shown(answer: TryAnswer) -> dict[str, Any]:
    """The answer as the page shows it: the JSON pretty, the step's logs apart."""
    text = answer.body.decode("utf-8", errors="replace")
    try:
        doc: Any = json.loads(text, parse_float=_mark, parse_int=_mark)
    except ValueError:
        doc = None
    details = doc if isinstance(doc, dict) else {}
    shown = {k: v for k, v in details.items() if k not in _APART}
    return {
        "status": answer.status,
        "ok": 200 <= answer.status < 300,
        "outcome": answer.outcome,
        "duration_ms": answer.duration_ms,
        "execution_id": answer.execution_id,
        "body": _pretty(shown) if doc is not None else text,
        "step_logs": details.get("logs") or [],
        "logs_discarded": int(str(details.get("logs_discarded", 0)).strip(_MARK)),
        "logs": answer.logs,
        "http_log": answer.http_log,
    }


# Numbers are shown with the digits the gateway sent (a step's "n" keeps them all):
# parsed as marked text, then written back bare.
_MARK = "\x00"
_MARKED = re.compile(r'"\\u0000(-?[0-9][0-9.eE+-]*)\\u0000"')


def _mark(digits: str) -> str:
    return f"{_MARK}{digits}{_MARK}"


def _pretty(doc: Any) -> str:
    return _MARKED.sub(r"\1", json.dumps(doc, indent=2, ensure_ascii=False))


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/scripts/{name}/test", test_page)
    router.add_post("/scripts/{name}/test", run_test)

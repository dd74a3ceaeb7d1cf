"""The import wizard (seed 001, "Import and Deploy a Custom Script"): General Details,
Validate, Runtime Settings, Resource Allocation, then Review with Save as Draft or
Deploy. The answers live in the session until the create; a step opens only once
every step before it is done, and one click on Review returns to any of them.
"""

from __future__ import annotations

from typing import Any

from aiohttp import BodyPartReader, web

from daemon.console import wizard_forms
from daemon.console.web import lifecycle, render, session, user
from daemon.console.wizard_forms import STEPS
from daemon.core.errors import BadRequest, ScriptdError
from daemon.core.models import DEPLOYED, Script
from daemon.lifecycle import request_checks
from daemon.lifecycle.project_zips import sample_zip
from daemon.lifecycle.staging import stage_archive
from daemon.lifecycle.status_table import refuse

__all__ = ["add_routes"]

ORDER = [key for key, _ in STEPS]
TERMS = (
    "Scripts run with the CPU, memory and replicas allocated here and are charged the "
    "profile's credits per hour while deployed. You are responsible for the code you "
    "deploy and for the data it handles."
)


def _state(request: web.Request) -> dict[str, Any]:
    return session(request).wizard


def _first_open(state: dict[str, Any]) -> str:
    done = state.get("done", [])
    return next((k for k in ORDER if k not in done), "review")


def _reached(state: dict[str, Any], step: str) -> bool:
    return ORDER.index(step) <= ORDER.index(_first_open(state))


def _finish(state: dict[str, Any], step: str) -> None:
    """Mark `step` done; steps after it are done again only when passed again."""
    done = state.setdefault("done", [])
    state["done"] = [k for k in done if ORDER.index(k) < ORDER.index(step)] + [step]


def _page(request: web.Request, step: str, extra: dict[str, Any]) -> web.Response:
    state = _state(request)
    catalogue = lifecycle(request).ctx.catalogue
    context = {
        "steps": STEPS, "step": step, "done": state.get("done", []), "w": state,
        "runtimes": catalogue.runtimes, "profiles": lifecycle(request).ctx.config.profiles,
        "config": lifecycle(request).ctx.config, "terms": TERMS, "error": None,
        "egress_choices": wizard_forms.EGRESS_CHOICES,
    }  # fmt: skip
    return render(
        request, f"wizard_{step}.html", context | extra, 422 if extra.get("error") else 200
    )


async def start(request: web.Request) -> web.StreamResponse:
    session(request).wizard = {}
    raise web.HTTPSeeOther("/import/general")


async def start_redeploy(request: web.Request) -> web.StreamResponse:
    """The wizard opened with the script's configuration; name and language locked."""
    script = await lifecycle(request).get(request.match_info["name"])
    if script.status != DEPLOYED:
        session(request).flash(
            refuse(script, "redeploy", "redeploy is for Deployed scripts").message, "error"
        )
        raise web.HTTPSeeOther(f"/scripts/{script.name}")
    session(request).wizard = wizard_forms.from_script(script)
    raise web.HTTPSeeOther("/import/general")


async def show(request: web.Request) -> web.StreamResponse:
    step = request.match_info["step"]
    if step not in ORDER:
        raise web.HTTPNotFound()
    state = _state(request)
    if not _reached(state, step):
        raise web.HTTPSeeOther(f"/import/{_first_open(state)}")
    extra: dict[str, Any] = {}
    if step == "validate":
        extra["report"] = await _validate(request, state)
    if step == "runtime" and "rows" not in state:
        state["rows"] = [{"key": "", "value": "", "secret": False}]
    return _page(request, step, extra)


async def _validate(request: web.Request, state: dict[str, Any]) -> dict[str, Any]:
    general = state["general"]
    if "archive_id" not in general:  # a redeploy that keeps the project file
        return {"ok": True, "kept": True, "errors": [], "warnings": [], "functions": []}
    try:
        report = await lifecycle(request).validate(general["archive_id"], general["language"])
    except ScriptdError as exc:  # the staged archive expired: upload it again
        return {"ok": False, "errors": [{"message": exc.message, "where": "", "fix": ""}]}
    found: dict[str, Any] = report.to_json()
    return found


async def post_general(request: web.Request) -> web.StreamResponse:
    state = _state(request)
    fields, staged = await _read_general(request)
    locked = state.get("redeploy") is not None  # name, language and version stay
    keys = ("description",) if locked else ("name", "description", "language", "version")
    state["general"] = {**state.get("general", {}), **{k: fields.get(k, "") for k in keys}}
    general = state["general"]
    try:
        await _check_general(request, general, staged is not None, locked)
    except ScriptdError as exc:
        return _page(request, "general", {"error": exc.message})
    if staged is not None:
        general.update(archive_id=staged[0], filename=staged[1], size=staged[2])
    _finish(state, "general")
    raise web.HTTPSeeOther("/import/validate")


async def _check_general(
    request: web.Request, general: dict[str, Any], uploaded: bool, locked: bool
) -> None:
    request_checks.script_name(general["name"])
    request_checks.language(general["language"])
    if locked:  # a redeploy may keep its project file
        return
    if not uploaded and "archive_id" not in general:
        raise BadRequest("choose the project file (.zip, .gz or .tar)", field="project")
    lc = lifecycle(request)
    if await lc.ctx.db(lc.ctx.store.get_script, general["name"]) is not None:
        raise BadRequest(f"a script named {general['name']!r} already exists", field="name")


async def _read_general(request: web.Request) -> tuple[dict[str, str], tuple[str, str, int] | None]:
    """The form's fields, and the project file staged as it streams in."""
    fields: dict[str, str] = {}
    staged = None
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            continue
        if part.name == "project" and part.filename:
            archive = await stage_archive(lifecycle(request), part.filename, _chunks(part))
            staged = (archive.archive_id, archive.filename, archive.size)
        elif part.name:
            fields[part.name] = (await part.text()).strip()
    return fields, staged


async def _chunks(part: BodyPartReader) -> Any:
    while chunk := await part.read_chunk(1 << 16):
        yield chunk


async def post_validate(request: web.Request) -> web.StreamResponse:
    state = _state(request)
    if not _reached(state, "validate"):
        raise web.HTTPSeeOther(f"/import/{_first_open(state)}")
    report = await _validate(request, state)
    if not report["ok"]:
        return _page(request, "validate", {"report": report})
    _finish(state, "validate")
    raise web.HTTPSeeOther("/import/runtime")


async def post_runtime(request: web.Request) -> web.StreamResponse:
    state, form = _state(request), await request.post()
    if not _reached(state, "runtime"):
        raise web.HTTPSeeOther(f"/import/{_first_open(state)}")
    rows = wizard_forms.env_rows(form)
    op = str(form.get("op", "next"))
    state["rows"], state["runtime_form"] = rows, {k: str(v) for k, v in form.items()}
    state["secrets"] = [str(s) for s in form.getall("secrets", [])]
    if op == "add":
        rows.append({"key": "", "value": "", "secret": False})
        return _page(request, "runtime", {})
    if op.startswith("delete:") and op[7:].isdigit() and int(op[7:]) < len(rows):
        del rows[int(op[7:])]
        return _page(request, "runtime", {})
    try:
        state["runtime"] = wizard_forms.runtime_body(form, rows, lifecycle(request).ctx.config)
    except ScriptdError as exc:
        return _page(request, "runtime", {"error": exc.message})
    _finish(state, "runtime")
    raise web.HTTPSeeOther("/import/resources")


async def post_resources(request: web.Request) -> web.StreamResponse:
    state, form = _state(request), await request.post()
    if not _reached(state, "resources"):
        raise web.HTTPSeeOther(f"/import/{_first_open(state)}")
    state["resources_form"] = {k: str(v) for k, v in form.items()}
    try:
        state["resources"] = wizard_forms.resources_body(form, lifecycle(request).ctx.config)
    except ScriptdError as exc:
        return _page(request, "resources", {"error": exc.message})
    _finish(state, "resources")
    raise web.HTTPSeeOther("/import/review")


async def post_review(request: web.Request) -> web.StreamResponse:
    state, form = _state(request), await request.post()
    if not _reached(state, "review"):
        raise web.HTTPSeeOther(f"/import/{_first_open(state)}")
    deploy = form.get("action") == "deploy"
    if deploy and "terms" not in form:
        return _page(request, "review", {"error": "Accept the Terms and Conditions to deploy."})
    try:
        script = await _create_or_redeploy(request, state, deploy)
    except ScriptdError as exc:
        return _page(request, "review", {"error": exc.message})
    session(request).wizard = {}
    saved = "Your custom script has been saved as a draft."
    session(request).flash(f"Deploying {script.name}." if deploy else saved)
    raise web.HTTPSeeOther(f"/scripts/{script.name}")


async def _create_or_redeploy(request: web.Request, state: dict[str, Any], deploy: bool) -> Script:
    general, lc = state["general"], lifecycle(request)
    body: dict[str, Any] = {
        "description": general["description"], **state["runtime"], **state["resources"],
    }  # fmt: skip
    if "archive_id" in general:
        body["archive_id"] = general["archive_id"]
    if state.get("redeploy") is not None:
        if not deploy:
            raise BadRequest("a redeploy deploys: choose Deploy (a Deployed script has no draft)")
        return await lc.redeploy(user(request), general["name"], body)
    body.update(name=general["name"], language=general["language"], deploy=deploy)
    if general.get("version"):
        body["language_version"] = general["version"]
    return await lc.create(user(request), body)


async def sample(request: web.Request) -> web.StreamResponse:
    from daemon.console.pages import send_zip

    language = request.match_info["language"]
    if language not in ("python", "javascript"):
        raise web.HTTPNotFound()
    path = await sample_zip(language)
    return await send_zip(request, path, f"sample-{language}.zip", True)


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/import", start)
    router.add_get("/scripts/{name}/redeploy", start_redeploy)
    router.add_get("/import/{step}", show)
    router.add_post("/import/general", post_general)
    router.add_post("/import/validate", post_validate)
    router.add_post("/import/runtime", post_runtime)
    router.add_post("/import/resources", post_resources)
    router.add_post("/import/review", post_review)
    router.add_get("/samples/{language}", sample)

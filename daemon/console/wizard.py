"""The import wizard (seed 001, "Import and Deploy a Custom Script"): General Details,
Validate, Runtime Settings, Resource Allocation, then Review with Save as Draft or
Deploy. The answers live in the session until the script is saved; a step opens only
once every step before it is done, and one click on Review returns to any of them.

The same wizard, opened on a script with its configuration, serves a Redeploy (a
Deployed script) and an edit (a Draft, or a script that is Ready to Deploy or whose
deployment failed: what the status table's "update" allows): name, language and
version are locked unless the script is a Draft.
"""

from __future__ import annotations

from typing import Any

from aiohttp import BodyPartReader, web

from daemon.console import wizard_forms
from daemon.console.web import lifecycle, multipart, render, session, user
from daemon.console.wizard_forms import STEPS
from daemon.core.errors import BadRequest, ScriptdError
from daemon.core.models import CONCURRENCY_RANGE, DRAFT, WORKERS_PER_REPLICA_RANGE, Script
from daemon.lifecycle import request_checks
from daemon.lifecycle.project_zips import sample_zip
from daemon.lifecycle.staging import stage_archive
from daemon.lifecycle.status_table import allows, refuse

__all__ = ["add_routes"]

ORDER = [key for key, _ in STEPS]
TERMS = (
    "Scripts run with the CPU, memory and replicas allocated here and are charged the "
    "profile's credits per hour while deployed. You are responsible for the code you "
    "deploy and for the data it handles."
)
SAVED_AS_DRAFT = "Your custom script has been saved as a draft."


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
    state, lc = _state(request), lifecycle(request)
    context = {
        "steps": STEPS, "step": step, "done": state.get("done", []), "w": state,
        "runtimes": lc.ctx.catalogue.runtimes, "profiles": lc.ctx.config.profiles,
        "config": lc.ctx.config, "terms": TERMS, "error": None,
        "egress_choices": wizard_forms.EGRESS_CHOICES, "kinds": request_checks.KINDS,
        "concurrency_range": CONCURRENCY_RANGE, "workers_range": WORKERS_PER_REPLICA_RANGE,
    }  # fmt: skip
    return render(
        request, f"wizard_{step}.html", context | extra, 422 if extra.get("error") else 200
    )


async def start(request: web.Request) -> web.StreamResponse:
    session(request).wizard = {"mode": "new"}
    raise web.HTTPSeeOther("/import/general")


async def start_redeploy(request: web.Request) -> web.StreamResponse:
    """The wizard opened with a Deployed script's configuration (seed: Redeploy)."""
    return await _open_on(request, "redeploy", "redeploy is for Deployed scripts")


async def start_edit(request: web.Request) -> web.StreamResponse:
    """The wizard opened with the saved configuration of a script not deployed."""
    return await _open_on(request, "update", "a Deployed script is changed by a redeploy")


async def _open_on(request: web.Request, action: str, hint: str) -> web.StreamResponse:
    script = await lifecycle(request).get(request.match_info["name"])
    if not allows(script.status, action):
        session(request).flash(refuse(script, action, hint).message, "error")
        raise web.HTTPSeeOther(f"/scripts/{script.name}")
    mode = "redeploy" if action == "redeploy" else "edit"
    session(request).wizard = wizard_forms.from_script(script, mode)
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
    if step == "runtime":
        state.setdefault("rows", [{"key": "", "value": "", "secret": False}])
        extra["account_secrets"] = await _account_secrets(request)
    return _page(request, step, extra)


async def _account_secrets(request: web.Request) -> list[Any]:
    lc = lifecycle(request)
    found: list[Any] = await lc.ctx.db(lc.ctx.store.list_secrets)
    return found


async def _validate(request: web.Request, state: dict[str, Any]) -> dict[str, Any]:
    """The archive's validation report (kept per upload: a page reload does not scan
    it again), with an error when the project is not the kind chosen."""
    general = state["general"]
    if "archive_id" not in general:  # a redeploy or an edit that keeps the project file
        report: dict[str, Any] = {"ok": True, "kept": True, "errors": [], "warnings": []}
        report |= {"functions": [], "kind": general["kept_kind"], "step": state.get("step")}
    else:
        report = await _archive_report(request, general)
    state["step"] = report.get("step")
    mismatch = request_checks.kind_mismatch(general["kind"], report.get("kind", general["kind"]))
    step_toml_refused = any(e.get("where") == "step.toml" for e in report["errors"])
    if mismatch is not None and not step_toml_refused:
        report = {**report, "ok": False, "errors": [*report["errors"], mismatch]}
    return report


async def _archive_report(request: web.Request, general: dict[str, Any]) -> dict[str, Any]:
    cached = general.get("report")
    if cached is not None and cached.get("language") == general["language"]:
        return dict(cached)
    try:
        report = await lifecycle(request).validate(general["archive_id"], general["language"])
    except ScriptdError as exc:  # the staged archive expired: upload it again
        return {"ok": False, "errors": [{"message": exc.message, "where": "", "fix": ""}]}
    found: dict[str, Any] = report.to_json()
    general["report"] = {**found, "language": general["language"]}
    return found


async def post_general(request: web.Request) -> web.StreamResponse:
    state = _state(request)
    fields, staged = await _read_general(request)
    locked = bool(state.get("locked"))
    state["general"] = {
        **state.get("general", {}), **wizard_forms.general_fields(fields, locked)
    }  # fmt: skip
    general = state["general"]
    try:
        await _check_general(request, state, staged is not None)
    except ScriptdError as exc:
        return _page(request, "general", {"error": exc.message})
    if staged is not None:
        general.update(archive_id=staged[0], filename=staged[1], size=staged[2])
        general.pop("report", None)
    _finish(state, "general")
    raise web.HTTPSeeOther("/import/validate")


async def _check_general(request: web.Request, state: dict[str, Any], uploaded: bool) -> None:
    general, lc = state["general"], lifecycle(request)
    request_checks.script_name(general["name"])
    request_checks.language(general["language"])
    request_checks.kind(general["kind"])
    if state.get("locked"):  # name, language and version stay as they are
        return
    version = general.get("version")
    if version and lc.ctx.catalogue.pick(general["language"], version) is None:
        have = ", ".join(lc.ctx.catalogue.versions(general["language"])) or "none"
        raise BadRequest(
            f"language_version: {general['language']} {version} is not on this host; "
            f"available: {have}",
            field="language_version",
        )
    if not uploaded and "archive_id" not in general:
        if not state.get("target"):
            raise BadRequest("choose the project file (.zip, .gz or .tar)", field="project")
        if general["language"] != general["kept_language"]:
            raise BadRequest("a new base language needs a new project file", field="project")
    if general["name"] != state.get("target") and await lc.ctx.db(
        lc.ctx.store.get_script, general["name"]
    ):
        raise BadRequest(f"a script named {general['name']!r} already exists", field="name")


async def _read_general(request: web.Request) -> tuple[dict[str, str], tuple[str, str, int] | None]:
    """The form's fields, and the project file staged as it streams in."""
    fields: dict[str, str] = {}
    staged = None
    reader = await multipart(request)
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
    again = {"account_secrets": await _account_secrets(request)}
    if op == "add":
        rows.append({"key": "", "value": "", "secret": False})
        return _page(request, "runtime", again)
    if op.startswith("delete:") and op[7:].isdigit() and int(op[7:]) < len(rows):
        del rows[int(op[7:])]
        return _page(request, "runtime", again)
    try:
        config, kind = lifecycle(request).ctx.config, state["general"]["kind"]
        state["runtime"] = wizard_forms.runtime_body(form, rows, config, kind)
    except ScriptdError as exc:
        return _page(request, "runtime", again | {"error": exc.message})
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
        script, said = await _save(request, state, deploy)
    except ScriptdError as exc:
        return _page(request, "review", {"error": exc.message})
    session(request).wizard = {}
    session(request).flash(said)
    raise web.HTTPSeeOther(f"/scripts/{script.name}")


async def _save(request: web.Request, state: dict[str, Any], deploy: bool) -> tuple[Script, str]:
    """Create, redeploy or update (then deploy) the script: (it, the message to show)."""
    lc, actor, body = lifecycle(request), user(request), wizard_forms.script_body(state)
    mode, target = state.get("mode", "new"), state.get("target", "")
    if mode == "redeploy":
        if not deploy:
            raise BadRequest("a redeploy deploys: choose Deploy (a Deployed script has no draft)")
        script = await lc.redeploy(actor, target, body)
    elif mode == "edit":
        script = await lc.update(actor, target, body)
        state.update(target=script.name, mode="edit")  # a Draft's new name, if renamed
        if deploy:
            script = await lc.deploy(actor, script.name)
        elif script.status == DRAFT:
            return script, SAVED_AS_DRAFT
        else:
            return script, f"The changes to {script.name} have been saved."
    else:
        script = await lc.create(actor, body | {"deploy": deploy})
        if not deploy:
            return script, SAVED_AS_DRAFT
    return script, f"Deploying {script.name}."


async def sample(request: web.Request) -> web.StreamResponse:
    from daemon.console.export_pages import send_zip

    language = request.match_info["language"]
    kind = request.query.get("kind", "functions")
    if language not in ("python", "javascript") or kind not in request_checks.KINDS:
        raise web.HTTPNotFound()
    folder = f"step-{language}" if kind == "step" else language
    path = await sample_zip(folder)
    return await send_zip(request, path, f"sample-{folder}.zip", True)


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/import", start)
    router.add_get("/scripts/{name}/redeploy", start_redeploy)
    router.add_get("/scripts/{name}/edit", start_edit)
    router.add_get("/import/{step}", show)
    router.add_post("/import/general", post_general)
    router.add_post("/import/validate", post_validate)
    router.add_post("/import/runtime", post_runtime)
    router.add_post("/import/resources", post_resources)
    router.add_post("/import/review", post_review)
    router.add_get("/samples/{language}", sample)

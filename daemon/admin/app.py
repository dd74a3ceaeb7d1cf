"""The admin API: an aiohttp app served on the unix socket.

Handlers are thin: parse the request, call the lifecycle, shape the answer with
daemon/admin/responses.py. Domain errors become `{"error": {...}}` with their HTTP status
in one middleware (`errors_to_json`); nothing below it knows about HTTP. The
caller is the socket peer's uid (SO_PEERCRED) turned into a user name: that is
"added by" and "deployed by". ROUTES is the single list that both registers the
handlers and produces `GET /openapi.json`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from pathlib import Path
from typing import Any

from aiohttp import web

from daemon.admin import (
    account_routes,
    async_routes,
    backup_routes,
    call_routes,
    console_routes,
    log_routes,
    secret_routes,
    try_routes,
)
from daemon.admin.exports import export_zip, sample_zip, send_file
from daemon.admin.http import (
    CATALOGUE,
    CHUNK,
    CONFIG,
    JSON_MAX,
    LIFECYCLE,
    Handler,
    body_json,
    caller,
    json_response,
    lifecycle,
)
from daemon.admin.openapi import Route, openapi_document
from daemon.admin.responses import script_json, summary_json, version_json
from daemon.build.catalogue import Catalogue
from daemon.config.daemon_config import Config
from daemon.core.errors import BadRequest, NotFound, PayloadTooLarge, ScriptdError
from daemon.core.models import Script
from daemon.lifecycle import request_checks
from daemon.lifecycle.actions import Lifecycle
from daemon.lifecycle.staging import stage_archive
from daemon.serving import workspace_image
from daemon.serving.replica_logs import LogWriter

log = logging.getLogger(__name__)
MAX_VERSION = 2**31 - 1  # SQLite's integers end at 2**63: past that a lookup would raise


@web.middleware
async def errors_to_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ScriptdError as exc:
        return json_response({"error": exc.to_json()}, exc.http_status)
    except web.HTTPException as exc:
        kind = {404: "not_found", 405: "bad_request", 413: "payload_too_large"}
        error = {"type": kind.get(exc.status, "bad_request"), "message": exc.reason}
        answer = json_response({"error": error}, exc.status)
        if "Allow" in exc.headers:  # a 405 names the methods the path takes (RFC 9110)
            answer.headers["Allow"] = exc.headers["Allow"]
        return answer
    except Exception as exc:
        log.exception("%s %s failed", request.method, request.path)
        error = {"type": "internal", "message": f"internal error: {type(exc).__name__}: {exc}"}
        return json_response({"error": error}, 500)


async def script_view(lc: Lifecycle, name: str) -> dict[str, Any]:
    script = await lc.get(name)
    view = script_json(script, await lc.deployment(script))
    view["autoscaling"] = await account_routes.autoscaling_json(lc, script)
    view["workspace"] = await workspace_json(lc, script)
    view["replicas"] = account_routes.replicas_json(lc, script)
    config = lc.ctx.config
    profile = config.profile(script.resources.profile) or config.default_profile
    own = script.resources.memory_bytes
    view["resources"]["memory_limit_bytes"] = min(own or profile.memory_bytes, profile.memory_bytes)
    return view


async def workspace_json(lc: Lifecycle, script: Script) -> dict[str, Any]:
    """The workspace's size limit (from the script's profile) and, while it is
    mounted, the bytes used in it."""
    config = lc.ctx.config
    profile = config.profile(script.resources.profile) or config.default_profile
    used = await asyncio.to_thread(workspace_image.usage, lc.ctx.state.workspace(script.id))
    return {"limit_bytes": profile.workspace_bytes, "used_bytes": used}


def _number(request: web.Request) -> int:
    text = request.match_info["number"]
    if not (text.isascii() and text.isdigit()) or int(text) > MAX_VERSION:
        raise BadRequest(f"version number {text!r} is not an integer from 0 to {MAX_VERSION}")
    return int(text)


# --- handlers ---------------------------------------------------------------------


async def get_openapi(request: web.Request) -> web.Response:
    return json_response(openapi_document(ROUTES, request.app[CONFIG]))


async def get_profiles(request: web.Request) -> web.Response:
    profiles = [p.to_json() for p in request.app[CONFIG].profiles]
    return json_response({"profiles": profiles})


async def get_runtimes(request: web.Request) -> web.Response:
    """The interpreters; each Python's with the state of its code steps' base
    environment (when steps.base_packages lists any)."""
    builder, base = lifecycle(request).ctx.builder, request.app[CONFIG].steps_base_packages
    runtimes = []
    for r in request.app[CATALOGUE].runtimes:
        doc = r.to_json()
        if r.language == "python" and base:
            doc["base_env"] = await asyncio.to_thread(builder.base_env_state, r, base)
        runtimes.append(doc)
    return json_response({"runtimes": runtimes})


async def post_archive(request: web.Request) -> web.Response:
    lc, limit = lifecycle(request), request.app[CONFIG].max_archive_bytes
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"the archive is larger than the limit of {limit} bytes")
    chunks = request.content.iter_chunked(CHUNK)
    staged = await stage_archive(lc, request.headers.get("X-Filename"), chunks)
    body = {"archive_id": staged.archive_id, "size": staged.size, "filename": staged.filename}
    return json_response(body, 201)


async def post_validate(request: web.Request) -> web.Response:
    body = request_checks.check_object(
        await body_json(request), frozenset({"archive_id", "language"})
    )
    language = body.get("language")
    if language is not None:
        language = request_checks.language(language)
    report = await lifecycle(request).validate(
        request_checks.archive_id(body.get("archive_id")), language
    )
    return json_response(report.to_json())


async def list_scripts(request: web.Request) -> web.Response:
    scripts = await lifecycle(request).scripts(request.query.get("search") or None)
    return json_response({"scripts": [summary_json(s) for s in scripts]})


async def create_script(request: web.Request) -> web.Response:
    lc = lifecycle(request)
    script = await lc.create(caller(request), await body_json(request))
    return json_response(await script_view(lc, script.name), 201)


async def get_script(request: web.Request) -> web.Response:
    return json_response(await script_view(lifecycle(request), request.match_info["name"]))


async def patch_script(request: web.Request) -> web.Response:
    lc = lifecycle(request)
    script = await lc.update(caller(request), request.match_info["name"], await body_json(request))
    return json_response(await script_view(lc, script.name))


async def deploy_script(request: web.Request) -> web.Response:
    lc, name = lifecycle(request), request.match_info["name"]
    request_checks.check_object(await body_json(request), frozenset())
    await lc.deploy(caller(request), name)
    return json_response(await script_view(lc, name), 202)


async def redeploy_script(request: web.Request) -> web.Response:
    lc, name = lifecycle(request), request.match_info["name"]
    await lc.redeploy(caller(request), name, await body_json(request))
    return json_response(await script_view(lc, name), 202)


async def undeploy_script(request: web.Request) -> web.Response:
    lc, name = lifecycle(request), request.match_info["name"]
    await lc.undeploy(caller(request), name)
    return json_response(await script_view(lc, name))


async def delete_script(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    await lifecycle(request).delete(caller(request), name)
    return json_response({"deleted": name})


async def export_script(request: web.Request) -> web.StreamResponse:
    lc, name = lifecycle(request), request.match_info["name"]
    script = await lc.get(name)
    path, temporary = await export_zip(script, lc.ctx.config.archive_limits())
    return await send_file(request, path, f"{name}.zip", temporary)


async def get_history(request: web.Request) -> web.Response:
    versions, events = await lifecycle(request).history(request.match_info["name"])
    return json_response(
        {"versions": [version_json(v) for v in versions], "events": [e.to_json() for e in events]}
    )


async def rename_version(request: web.Request) -> web.Response:
    lc, name = lifecycle(request), request.match_info["name"]
    v = await lc.rename_version(caller(request), name, _number(request), await body_json(request))
    return json_response(version_json(v))


async def get_build_log(request: web.Request) -> web.Response:
    lc = lifecycle(request)
    script, v = await lc.version(request.match_info["name"], _number(request))
    path = lc.ctx.state.build_log(script.id, v.number)
    text = await asyncio.to_thread(_read_text, path)
    return web.Response(text=text, content_type="text/plain")


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""


async def get_sample(request: web.Request) -> web.StreamResponse:
    language = request.match_info["language"]
    if language not in ("python", "javascript"):
        raise NotFound(f"no sample for {language!r}: there are python and javascript")
    kind = request.query.get("kind", "functions")
    if kind not in ("functions", "step"):
        raise BadRequest(f"kind = {kind!r}: functions or step", field="kind")
    folder = language if kind == "functions" else f"step-{language}"
    path = await sample_zip(folder)
    return await send_file(request, path, f"sample-{folder}.zip", True)


ROUTES: tuple[Route, ...] = (
    Route("GET", "/openapi.json", get_openapi, "This document", None, "OpenAPI"),
    Route("GET", "/v1/profiles", get_profiles, "The hardware profiles", None, "Profiles"),
    Route("GET", "/v1/runtimes", get_runtimes, "Interpreters found on this host", None, "Runtimes"),
    Route("POST", "/v1/archives", post_archive, "Upload an archive (raw body, X-Filename)",
          "binary", "Upload", 201),
    Route("POST", "/v1/validate", post_validate, "Validate an uploaded archive", "Validate",
          "Report"),
    Route("GET", "/v1/scripts", list_scripts, "List scripts (?search=TEXT)", None, "ScriptList"),
    Route("POST", "/v1/scripts", create_script, "Create a script (Draft; deploy:true deploys)",
          "ScriptCreate", "Script", 201),
    Route("GET", "/v1/scripts/{name}", get_script, "Overview of a script", None, "Script"),
    Route("PATCH", "/v1/scripts/{name}", patch_script, "Update a script (not while Deployed)",
          "ScriptUpdate", "Script"),
    Route("DELETE", "/v1/scripts/{name}", delete_script, "Delete a script and its files", None,
          "Deleted"),
    Route("POST", "/v1/scripts/{name}/deploy", deploy_script, "Deploy (a new version)", None,
          "Script", 202),
    Route("POST", "/v1/scripts/{name}/redeploy", redeploy_script, "Redeploy a Deployed script",
          "ScriptRedeploy", "Script", 202),
    Route("POST", "/v1/scripts/{name}/undeploy", undeploy_script, "Undeploy", None, "Script"),
    Route("GET", "/v1/scripts/{name}/export", export_script, "The project as a .zip", None,
          "zip"),
    Route("GET", "/v1/scripts/{name}/history", get_history, "Versions and events", None,
          "History"),
    Route("PATCH", "/v1/scripts/{name}/versions/{number}", rename_version,
          "Rename a version (display_name)", "Rename", "Version"),
    Route("GET", "/v1/scripts/{name}/versions/{number}/log", get_build_log,
          "The build log of a version", None, "text"),
    Route("GET", "/v1/samples/{language}", get_sample,
          "A sample project as a .zip (?kind=step: a code step)", None, "zip", query=("kind",)),
    *call_routes.ROUTES,
    *try_routes.ROUTES,
    *log_routes.ROUTES,
    *account_routes.ROUTES,
    *secret_routes.ROUTES,
    *console_routes.ROUTES,
    *backup_routes.ROUTES,
    *async_routes.ROUTES,
)  # fmt: skip


def make_app(
    lc: Lifecycle,
    config: Config,
    catalogue: Catalogue,
    logs: LogWriter,
    tryout: try_routes.Tryout | None = None,
    console_links: console_routes.LinkIssuer | None = None,
) -> web.Application:
    """`tryout`: the gateway for the run and call routes (they answer 503 without it);
    `console_links`: the web console's sign-in links (503 without it)."""
    app = web.Application(middlewares=[errors_to_json], client_max_size=JSON_MAX)
    app[LIFECYCLE] = lc
    app[CONFIG] = config
    app[CATALOGUE] = catalogue
    app[log_routes.LOGS] = logs
    app.on_shutdown.append(log_routes.end_follows)
    if tryout is not None:
        app[try_routes.TRY] = tryout
    if console_links is not None:
        app[console_routes.LINKS] = console_links
    for r in ROUTES:
        app.router.add_route(r.method, r.path, r.handler)
    return app


async def serve_unix(
    app: web.Application, path: Path, mode: int, group: str | None
) -> web.AppRunner:
    """Serve `app` on the unix socket `path` (mode, group as configured)."""
    await asyncio.to_thread(_clear_socket, path)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.UnixSite(runner, str(path)).start()
    os.chmod(path, mode)
    if group:
        import grp

        os.chown(path, -1, grp.getgrnam(group).gr_gid)
    return runner


def _clear_socket(path: Path) -> None:
    """Remove a stale socket; refuse if a live daemon answers on it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() and not path.is_symlink():
        return
    probe = socket.socket(socket.AF_UNIX)
    try:
        probe.connect(str(path))
    except OSError:
        path.unlink()
        return
    finally:
        probe.close()
    raise RuntimeError(f"another scriptd already answers on {path}")


__all__ = [
    "ROUTES",
    "make_app",
    "serve_unix",
]

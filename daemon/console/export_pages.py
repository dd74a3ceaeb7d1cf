"""Export with progress and Cancel (seed 001, "Export"): Export opens a page that
follows the job (daemon/lifecycle/export_jobs.py) until its zip is ready to download,
or it failed, or it was cancelled. htmx refreshes the status every second; without
JavaScript, the page's Refresh link does.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web

from daemon.console.web import lifecycle, render, session, user
from daemon.core.errors import ScriptdError
from daemon.lifecycle.export_jobs import ExportJobs
from daemon.lifecycle.status_table import allows, refuse

__all__ = ["EXPORTS", "add_routes", "send_zip"]

CHUNK = 1 << 20
CANCEL_WAIT_S = 5.0
EXPORTS = web.AppKey("exports", ExportJobs)


async def start_export(request: web.Request) -> web.StreamResponse:
    """Export (the Actions menu, the Overview): start the job, then follow it."""
    lc = lifecycle(request)
    script = await lc.get(request.match_info["name"])
    if not allows(script.status, "export"):
        session(request).flash(refuse(script, "export").message, "error")
        raise web.HTTPSeeOther(f"/scripts/{script.name}")
    try:
        job = request.app[EXPORTS].start(script, user(request), lc.ctx.config.archive_limits())
    except ScriptdError as exc:  # too many running
        session(request).flash(exc.message, "error")
        raise web.HTTPSeeOther(f"/scripts/{script.name}") from None
    raise web.HTTPSeeOther(f"/exports/{job.id}")


async def export_status(request: web.Request) -> web.Response:
    job = request.app[EXPORTS].get(request.match_info["id"], user(request))
    partial = request.headers.get("HX-Request") and request.headers.get("HX-Target") == (
        "export-status"
    )
    return render(request, "_export_status.html" if partial else "export.html", {"job": job})


async def cancel_export(request: web.Request) -> web.StreamResponse:
    jobs = request.app[EXPORTS]
    job = jobs.cancel(request.match_info["id"], user(request))
    # It stops at its next check (after each file packed): usually at once; a file
    # that reads slowly shows "Cancelling" until then.
    await jobs.wait(job.id, CANCEL_WAIT_S)
    raise web.HTTPSeeOther(f"/exports/{job.id}")


async def download_export(request: web.Request) -> web.StreamResponse:
    jobs = request.app[EXPORTS]
    job = jobs.get(request.match_info["id"], user(request))
    if job.path is None:
        session(request).flash(f"The export of {job.script} has no file to download.", "error")
        raise web.HTTPSeeOther(f"/exports/{job.id}")
    path, temporary = job.path, job.temporary
    job.temporary = False  # send_zip removes it now
    jobs.downloaded(job)
    try:
        return await send_zip(request, path, f"{job.script}.zip", temporary)
    except FileNotFoundError:  # the script was deleted meanwhile, its archive with it
        session(request).flash(f"The project of {job.script} is gone: export it again.", "error")
        raise web.HTTPSeeOther("/") from None


async def send_zip(
    request: web.Request, path: Path, filename: str, temporary: bool
) -> web.StreamResponse:
    """Stream the zip in chunks read in a thread; a temporary one is removed after."""
    try:
        response = web.StreamResponse(
            headers={
                "Content-Type": "application/zip",
                "Content-Disposition": f'attachment; filename="{filename}"',
            }
        )
        response.content_length = (await asyncio.to_thread(path.stat)).st_size
        await response.prepare(request)
        with await asyncio.to_thread(open, path, "rb") as f:
            while chunk := await asyncio.to_thread(f.read, CHUNK):
                await response.write(chunk)
        await response.write_eof()
        return response
    finally:
        if temporary:
            await asyncio.to_thread(path.unlink, True)


async def _close_jobs(app: web.Application) -> None:
    await app[EXPORTS].close()


def add_routes(app: web.Application) -> None:
    app[EXPORTS] = ExportJobs()
    app.on_cleanup.append(_close_jobs)
    app.router.add_get("/scripts/{name}/export", start_export)
    app.router.add_get("/exports/{id}", export_status)
    app.router.add_post("/exports/{id}/cancel", cancel_export)
    app.router.add_get("/exports/{id}/download", download_export)

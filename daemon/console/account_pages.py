"""Account pages: credits and spending by script, the account uploads (UPLOADS_DIR),
and the Notifications outbox."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from aiohttp import BodyPartReader, web

from daemon.console.web import act, form, lifecycle, multipart, render, session
from daemon.core.credits import MICRO, low_threshold
from daemon.core.errors import ScriptdError
from daemon.core.models import now_iso
from daemon.lifecycle import request_checks
from daemon.lifecycle.staging import store_upload
from daemon.store import uploads_folder

__all__ = ["add_routes"]

OUTBOX_STATUSES = ("queued", "sent", "retrying", "failed")
SHOWN = 100


async def notifications(request: web.Request) -> web.Response:
    lc = lifecycle(request)
    status = request.query.get("status") or None
    if status not in (None, *OUTBOX_STATUSES):
        status = None
    rows = await lc.ctx.db(lc.ctx.store.list_outbox, SHOWN, status, None)
    context = {
        "rows": rows,
        "statuses": OUTBOX_STATUSES,
        "status_filter": status or "",
        "smtp_configured": bool(lc.ctx.config.account.notify.smtp.host),
    }
    return render(request, "notifications.html", context)


PERIODS = {"1h": 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400, "all": None}


def _credits(micro: int) -> float:
    return round(micro / MICRO, 6)


async def account(request: web.Request) -> web.Response:
    lc = lifecycle(request)
    period = request.query.get("period", "24h")
    if period not in PERIODS:
        period = "24h"
    seconds = PERIODS[period]
    since = 0.0 if seconds is None else time.time() - seconds
    state = await lc.ctx.db(lc.ctx.store.get_account)
    usage = await lc.ctx.db(lc.ctx.store.usage_by_script, int(since * 1000))
    low = low_threshold(state.allocation, lc.ctx.config.account.credits.low_balance)
    context = {
        "allocation": _credits(state.allocation),
        "balance": _credits(max(0, state.balance)),
        "spent": _credits(state.allocation - state.balance),
        "low": state.allocation > 0 and state.balance <= low,
        "low_balance": _credits(low),
        "usage": [(u, _credits(u.amount)) for u in usage],
        "total": _credits(sum(u.amount for u in usage)),
        "periods": list(PERIODS),
        "period": period,
    }
    return render(request, "account.html", context)


async def set_allocation(request: web.Request) -> web.StreamResponse:
    """The total allocation, as `scriptctl account set --allocation N [--reset]` sets it:
    the balance moves by the change (what was spent stays spent), or starts again."""
    lc, fields = lifecycle(request), await form(request)
    reset = fields.get("reset") == "on"

    async def apply() -> None:
        micro = request_checks.allocation_micro(fields.get("allocation", ""))
        await lc.ctx.db(lc.ctx.store.set_allocation, micro, reset, now_iso())

    said = "The total allocation is now {} credits{}.".format(
        fields.get("allocation", "").strip(), " and the balance starts again" if reset else ""
    )
    return await act(request, apply(), said, "/account")


async def uploads(request: web.Request) -> web.Response:
    root = lifecycle(request).ctx.config.uploads_dir
    files = await asyncio.to_thread(uploads_folder.list_files, root)
    context = {"files": files, "delete": request.query.get("delete")}
    return render(request, "uploads.html", context)


async def add_upload(request: web.Request) -> web.StreamResponse:
    config = lifecycle(request).ctx.config
    reader = await multipart(request)
    replace, stored = False, None
    try:
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                continue
            if part.name == "replace":
                replace = (await part.text()) == "on"
            elif part.name == "file" and part.filename:
                stored = await store_upload(config, part.filename, _chunks(part), replace)
    except ScriptdError as exc:
        session(request).flash(exc.message, "error")
    else:
        if stored is None:
            session(request).flash("Choose a file to upload.", "error")
        else:
            session(request).flash(f"{stored.name} uploaded ({stored.size} bytes).")
    return web.HTTPSeeOther("/uploads")


async def _chunks(part: BodyPartReader) -> AsyncIterator[bytes]:
    while chunk := await part.read_chunk(1 << 16):
        yield chunk


async def delete_upload(request: web.Request) -> web.StreamResponse:
    name = (await form(request)).get("name", "")
    root = lifecycle(request).ctx.config.uploads_dir

    async def remove() -> None:
        await asyncio.to_thread(uploads_folder.delete_file, root, uploads_folder.file_name(name))

    return await act(request, remove(), f"{name} deleted.", "/uploads")


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/account", account)
    router.add_post("/account/allocation", set_allocation)
    router.add_get("/uploads", uploads)
    router.add_post("/uploads", add_upload)
    router.add_post("/uploads/delete", delete_upload)
    router.add_get("/notifications", notifications)

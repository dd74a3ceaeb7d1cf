"""Account pages: the Notifications outbox (each email and its status)."""

from __future__ import annotations

from aiohttp import web

from daemon.console.web import lifecycle, render

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


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/notifications", notifications)

"""Account pages: credits and spending by script, and the Notifications outbox."""

from __future__ import annotations

import time

from aiohttp import web

from daemon.console.web import lifecycle, render
from daemon.core.credits import MICRO, low_threshold

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


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/account", account)
    router.add_get("/notifications", notifications)

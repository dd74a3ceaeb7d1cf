"""Admin routes of the account: credits, usage, the email outbox, and a script's events
with its live autoscaling state.

Thin like the other route modules: check the request, read or write the store in a
thread, shape the answer. The live state (replica counts, the autoscaler's last
tick) comes from daemon/account/services.py's services when the daemon runs them.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from daemon.account.services import AccountServices
from daemon.admin.http import CONFIG, body_json, json_response, lifecycle
from daemon.admin.openapi import Route
from daemon.core.credits import MICRO, Account, low_threshold
from daemon.core.errors import BadRequest
from daemon.core.models import Script, now_iso
from daemon.core.outbox import OutboxMessage
from daemon.lifecycle.actions import Lifecycle
from daemon.lifecycle.request_checks import allocation_micro, check_object
from daemon.store.keys_table import iso_from_unix

__all__ = ["ROUTES", "autoscaling_json", "parse_since"]

LIMIT_MAX = 1000
RECENT_SCALED = 5
_AGE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def _credits(micro: int) -> float:
    return round(micro / MICRO, 6)


def account_json(request: web.Request, account: Account) -> dict[str, Any]:
    credits = request.app[CONFIG].account.credits
    return {
        "allocation": _credits(account.allocation),
        "balance": _credits(max(0, account.balance)),
        "spent": _credits(account.allocation - account.balance),
        "allocation_micro": account.allocation,
        "balance_micro": account.balance,
        "low_balance": _credits(low_threshold(account.allocation, credits.low_balance)),
        "admission_hours": float(credits.admission_hours),
    }


def services(lc: Lifecycle) -> AccountServices | None:
    hooks = lc.ctx.hooks
    return hooks if isinstance(hooks, AccountServices) else None


def _limit(request: web.Request, default: int) -> int:
    raw = request.query.get("limit")
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= LIMIT_MAX:
        raise BadRequest(f"limit = {raw!r} is not allowed: an integer from 1 to {LIMIT_MAX}")
    return int(raw)


def parse_since(text: str, now: float) -> float:
    """`2026-11-01`, `2026-11-01T10:00:00Z` or an age (`7d`, `24h`, `30m`) -> unix time."""
    text = text.strip()
    age = _AGE.fullmatch(text)
    if age:
        return now - float(age.group(1)) * _UNITS[age.group(2)]
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(
            f"since = {text!r} is not allowed: an ISO-8601 time such as 2026-11-01T00:00:00Z, "
            "or an age such as 7d, 24h, 30m"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # times without a zone are UTC, as shown
    return moment.timestamp()


# --- the account -----------------------------------------------------------------------


async def get_account(request: web.Request) -> web.Response:
    lc = lifecycle(request)
    doc = account_json(request, await lc.ctx.db(lc.ctx.store.get_account))
    config = request.app[CONFIG]
    size = await lc.ctx.db(lc.ctx.store.store_size)
    doc["store"] = size.to_json() | {
        "retention_days": config.executions_retention_days,
        "max_per_script": config.executions_max_per_script,
    }
    return json_response(doc)


async def put_account(request: web.Request) -> web.Response:
    lc = lifecycle(request)
    body = check_object(await body_json(request), frozenset({"allocation", "reset"}))
    allocation = allocation_micro(body.get("allocation"))
    reset = body.get("reset", False)
    if not isinstance(reset, bool):
        raise BadRequest(f"reset = {reset!r} is not allowed: true or false", field="reset")
    _, after = await lc.ctx.db(lc.ctx.store.set_allocation, allocation, reset, now_iso())
    return json_response(account_json(request, after))


async def get_usage(request: web.Request) -> web.Response:
    lc, now = lifecycle(request), time.time()
    raw = request.query.get("since")
    # an age past 1970 is all the usage (and keeps the store's integers in range)
    since = max(parse_since(raw, now), 0.0) if raw else 0.0
    rows = await lc.ctx.db(lc.ctx.store.usage_by_script, int(since * 1000))
    scripts = [
        {
            "script": u.script, "profile": u.profile, "replica_seconds": u.replica_ms / 1000,
            "credits": _credits(u.amount), "replicas": u.replicas,
        }
        for u in rows
    ]  # fmt: skip
    return json_response(
        {
            # The ledger's grain is the wall-clock hour: usage counts from the hour of `since`.
            "since": iso_from_unix(since - since % 3600),
            "until": iso_from_unix(now),
            "total_credits": _credits(sum(u.amount for u in rows)),
            "total_replica_seconds": sum(u.replica_ms for u in rows) / 1000,
            "scripts": scripts,
        }
    )


# --- notifications -----------------------------------------------------------------------


def _iso(t: float | None) -> str | None:
    return None if t is None else iso_from_unix(t)


def notification_json(m: OutboxMessage) -> dict[str, Any]:
    return {
        "id": m.id, "kind": m.kind, "subject": m.subject, "recipient": m.recipient,
        "status": m.status, "attempts": m.attempts, "last_error": m.last_error,
        "created_at": _iso(m.created_at), "next_attempt_at": _iso(m.next_attempt_at),
        "sent_at": _iso(m.sent_at), "script": m.script, "version": m.version,
    }  # fmt: skip


async def list_notifications(request: web.Request) -> web.Response:
    lc = lifecycle(request)
    status = request.query.get("status") or None
    if status not in (None, "queued", "sent", "retrying", "failed"):
        raise BadRequest(
            f"status = {status!r} is not allowed: one of queued, sent, retrying, failed"
        )
    script = request.query.get("script") or None
    rows = await lc.ctx.db(lc.ctx.store.list_outbox, _limit(request, 50), status, script)
    return json_response(
        {
            "smtp_configured": bool(request.app[CONFIG].account.notify.smtp.host),
            "notifications": [notification_json(m) for m in rows],
        }
    )


# --- events and autoscaling -------------------------------------------------------------


async def autoscaling_json(lc: Lifecycle, script: Script) -> dict[str, Any]:
    """The "autoscaling" part of a script's overview and of its events."""
    r = script.resources
    live = services(lc)
    status = live.scaling.status(script.name) if live is not None else {}
    recent = await lc.ctx.db(lc.ctx.store.recent_events, script.id, "scaled", RECENT_SCALED)
    serving = script.current_version is not None
    return {
        "enabled": r.min_replicas != r.max_replicas,
        "min_replicas": r.min_replicas,
        "max_replicas": r.max_replicas,
        "cpu_target_pct": r.cpu_target,
        "replicas": status.get("replicas") if serving else None,
        "ready": status.get("ready") if serving else None,
        "last_decision": status.get("last_decision"),
        "recent": [e.to_json() for e in recent],
    }


def replicas_json(lc: Lifecycle, script: Script) -> list[dict[str, Any]]:
    """The script's live replicas, each with its traffic through the egress proxy."""
    live = services(lc)
    replicas = live.scaling.replicas(script.name) if live is not None else []
    counters = lc.ctx.egress_counters
    return [
        {
            "name": r.name,
            "state": r.state,
            "busy": r.busy,
            "egress": counters(r.name) if counters is not None else None,
        }
        for r in replicas
    ]


async def list_events(request: web.Request) -> web.Response:
    lc = lifecycle(request)
    script = await lc.get(request.match_info["name"])
    kind = request.query.get("kind") or None
    events = await lc.ctx.db(lc.ctx.store.recent_events, script.id, kind, _limit(request, 100))
    return json_response(
        {
            "script": script.name,
            "events": [e.to_json() for e in events],
            "autoscaling": await autoscaling_json(lc, script),
        }
    )


ROUTES: tuple[Route, ...] = (
    Route("GET", "/v1/account", get_account,
          "Credits: total allocation and balance; the store's size and retention", None,
          "Account"),
    Route("PUT", "/v1/account", put_account,
          "Set the total allocation (credits); the balance moves by the change, or is reset",
          "AccountInput", "Account"),
    Route("GET", "/v1/account/usage", get_usage,
          "Credits spent by script and profile (?since=ISO or 7d/24h/30m)", None, "Usage",
          query=("usage.since",)),
    Route("GET", "/v1/notifications", list_notifications,
          "The email outbox, newest first (?status=, ?script=)", None, "Notifications",
          query=("notifications.status", "script", "limit")),
    Route("GET", "/v1/scripts/{name}/events", list_events,
          "A script's events, oldest of the newest N first (?kind=scaled), and its autoscaling",
          None, "Events", query=("events.kind", "limit")),
)  # fmt: skip

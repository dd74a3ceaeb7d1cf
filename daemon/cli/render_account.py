"""How the account, its usage, the email outbox, a script's events and its
autoscaling look to a person. Pure functions from the API's JSON to text."""

from __future__ import annotations

from typing import Any

from daemon.cli.output import NONE, fmt_bytes, fmt_time, render_fields, render_table


def credits(value: Any) -> str:
    return NONE if value is None else f"{float(value):,.6f}"


def account(data: dict[str, Any]) -> str:
    return render_fields(
        [
            ("Total allocation", f"{credits(data.get('allocation'))} credits"),
            ("Credits remaining", f"{credits(data.get('balance'))} credits"),
            ("Spent", f"{credits(data.get('spent'))} credits"),
            ("Low-credits email below", f"{credits(data.get('low_balance'))} credits"),
            ("A deploy needs", f"min replicas x {data.get('admission_hours')} h of credits"),
            *_store(data.get("store")),
        ]
    )


def _store(store: Any) -> list[tuple[str, Any]]:
    """The store's size lines (GET /v1/account has them; PUT's answer does not)."""
    if not isinstance(store, dict):
        return []
    size = f"{fmt_bytes(store.get('total_bytes'))} ({fmt_bytes(store.get('free_bytes'))} free)"
    days, newest = store.get("retention_days") or 0, store.get("max_per_script") or 0
    kept = f"{days:g} days, the newest {newest:,} per script"
    return [
        ("Store size", size),
        ("Execution records", f"{store.get('execution_records') or 0:,}"),
        ("Emails in the outbox", f"{store.get('outbox_messages') or 0:,}"),
        ("Records kept", kept),
    ]


def usage(data: dict[str, Any]) -> str:
    head = f"Usage since {fmt_time(data.get('since'))} UTC (until {fmt_time(data.get('until'))})"
    rows = [
        (
            u.get("script"),
            u.get("profile"),
            u.get("replicas"),
            f"{(u.get('replica_seconds') or 0) / 3600:.4f}",
            credits(u.get("credits")),
        )
        for u in data.get("scripts") or []
    ]
    if not rows:
        return f"{head}\nNo usage."
    rows.append(("total", "", "", f"{(data.get('total_replica_seconds') or 0) / 3600:.4f}",
                 credits(data.get("total_credits"))))  # fmt: skip
    return (
        head
        + "\n"
        + render_table(("SCRIPT", "PROFILE", "REPLICAS", "REPLICA-HOURS", "CREDITS"), rows)
    )


def notifications(data: dict[str, Any]) -> str:
    items = data.get("notifications") or []
    note = (
        ""
        if data.get("smtp_configured")
        else ("\n(no SMTP configured: emails stay queued; set [notify.smtp] host in the config)")
    )
    if not items:
        return "No notifications." + note
    rows = [
        (
            n.get("id"),
            fmt_time(n.get("created_at")),
            n.get("status"),
            n.get("attempts"),
            n.get("script") or NONE,
            n.get("subject"),
            _error(n),
        )
        for n in items
    ]
    table = render_table(
        ("ID", "CREATED (UTC)", "STATUS", "TRIES", "SCRIPT", "SUBJECT", "LAST ERROR / NEXT TRY"),
        rows,
    )
    return table + note


def _error(n: dict[str, Any]) -> str:
    if n.get("status") == "sent":
        return f"sent {fmt_time(n.get('sent_at'))}"
    err = " ".join(str(n.get("last_error") or "").split())[:60]
    nxt = n.get("next_attempt_at")
    if n.get("status") == "retrying" and nxt:
        return f"{err}; next {fmt_time(nxt)}"
    return err or NONE


def decision_text(d: dict[str, Any] | None) -> str:
    if not d:
        return NONE
    util = d.get("utilization_pct")
    util_text = NONE if util is None else f"{util} %"
    return (
        f"{d.get('from')} -> {d.get('to')} ({d.get('reason')}): CPU {util_text} of target "
        f"{d.get('target_pct')} %, queue wait {d.get('queue_wait_s')} s, "
        f"{d.get('queued')} queued, {d.get('in_flight')} in flight"
    )


def autoscaling(data: dict[str, Any]) -> str:
    """The Autoscaling part of `scriptctl show`."""
    if not data.get("enabled"):
        lines = [("Policy", "off (min = max replicas)")]
    else:
        lines = [
            ("Policy", f"{data.get('min_replicas')} to {data.get('max_replicas')} "
                            f"replicas at {data.get('cpu_target_pct')} % CPU"),
            ("Last tick", decision_text(data.get("last_decision"))),
        ]  # fmt: skip
    if data.get("replicas") is not None:
        lines.insert(1, ("Replicas now", f"{data.get('replicas')} ({data.get('ready')} ready)"))
    text = "Autoscaling\n" + render_fields(lines, indent="  ")
    recent = data.get("recent") or []
    if recent:
        text += "\n  Recent scaling (see `scriptctl events NAME`):\n" + "\n".join(
            f"    {fmt_time(e.get('at'))}  {decision_text(e.get('detail'))}" for e in recent
        )
    return text


def events(data: dict[str, Any]) -> str:
    items = data.get("events") or []
    if not items:
        text = "No events."
    else:
        rows = [
            (fmt_time(e.get("at")), e.get("kind"), e.get("actor"), event_detail(e)) for e in items
        ]
        text = render_table(("AT (UTC)", "EVENT", "BY", "DETAIL"), rows)
    scaling = data.get("autoscaling")
    return text + ("\n\n" + autoscaling(scaling) if scaling else "")


def event_detail(e: dict[str, Any]) -> str:
    detail = e.get("detail") or {}
    if e.get("kind") == "scaled":
        return decision_text(detail)
    return ", ".join(_flat(detail)) or NONE


def _flat(detail: dict[str, Any], prefix: str = "") -> list[str]:
    """`key=value` pairs, nested keys dotted, long values cut to one short line."""
    out = []
    for key, value in detail.items():
        if isinstance(value, dict):
            out += _flat(value, f"{prefix}{key}.")
        else:
            text = " ".join(str(value).split())
            out.append(f"{prefix}{key}={text if len(text) <= 60 else text[:57] + '...'}")
    return out

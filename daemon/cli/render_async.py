"""Text output of asynchronous calls: `scriptctl executions NAME --status dead` (a
listing) and `scriptctl execution ID` / `executions retry ID` of an async call."""

from __future__ import annotations

import json
from typing import Any

from daemon.cli.output import NONE, fmt_time, render_fields, render_table


def calls_table(data: dict[str, Any]) -> str:
    items = data.get("calls") or []
    if not items:
        return f"No asynchronous calls of {data.get('script', 'this script')} match."
    rows = [
        (
            c.get("execution_id"),
            fmt_time(c.get("received_at")),
            c.get("function"),
            c.get("key_name"),
            c.get("status") + (" (dead)" if c.get("dead") else ""),
            c.get("attempts"),
            fmt_time(c.get("ended_at")),
            c.get("error_type") or "",
        )
        for c in items
    ]
    headers = ("ID", "RECEIVED (UTC)", "FUNCTION", "KEY", "STATUS", "ATTEMPTS", "ENDED (UTC)",
               "ERROR")  # fmt: skip
    return render_table(headers, rows)


def call(c: dict[str, Any]) -> str:
    fields = [
        ("Execution", c.get("execution_id")),
        ("Asynchronous", "yes" + (", a dead letter" if c.get("dead") else "")),
        ("Script", c.get("script")),
        ("Function", c.get("function")),
        ("Key", c.get("key_name")),
        ("Status", c.get("status")),
        ("Attempts", f"{c.get('attempts')} (retries allowed: {c.get('max_retries')})"),
        ("Received", fmt_time(c.get("received_at"))),
        ("Started", fmt_time(c.get("started_at"))),
        ("Ended", fmt_time(c.get("ended_at"))),
        ("Idempotency key", c.get("idempotency_key") or NONE),
    ]
    parts = [render_fields(fields)]
    log = c.get("attempt_log") or []
    if log:
        rows = [(a.get("execution_id"), a.get("status"), fmt_time(a.get("started_at")),
                 fmt_time(a.get("ended_at")), a.get("error_type") or "") for a in log]  # fmt: skip
        parts.append("Attempts\n" + render_table(
            ("EXECUTION", "STATUS", "STARTED (UTC)", "ENDED (UTC)", "ERROR"), rows))  # fmt: skip
    for key in ("result", "error"):
        if key in c:
            parts.append(f"{key.capitalize()}\n" + json.dumps(c[key], indent=2))
    callback = c.get("callback")
    if callback:
        parts.append(_callback(callback))
    return "\n\n".join(parts)


def _callback(cb: dict[str, Any]) -> str:
    head = f"Callback {cb.get('url')}: {cb.get('state') or 'not yet'}"
    rows = [(d.get("attempt"), fmt_time(d.get("at")), d.get("status_code") or "",
             f"{d.get('duration_ms')} ms", d.get("error") or "")
            for d in cb.get("deliveries") or []]  # fmt: skip
    if not rows:
        return head
    return head + "\n" + render_table(("TRY", "AT (UTC)", "STATUS", "DURATION", "ERROR"), rows)

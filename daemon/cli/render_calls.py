"""How API keys, execution records and account uploads look to a person.

Pure functions from the API's JSON to text, like daemon/cli/render_scripts.py. A key's
secret appears in exactly one place: `new_key`, the answer to `keys create`.
"""

from __future__ import annotations

import json
from typing import Any

from daemon.cli import render_http
from daemon.cli.output import NONE, fmt_bytes, fmt_time, render_fields, render_table

NOT_SHOWN_AGAIN = "Save this key now: it will not be shown again. If you lose it, create a new one."


def keys_table(data: dict[str, Any]) -> str:
    keys = data.get("keys") or []
    if not keys:
        return f"No API keys for {data.get('script', 'this script')}."
    rows = [
        (
            k.get("name"),
            fmt_time(k.get("created_at")),
            k.get("created_by"),
            fmt_time(k.get("last_used_at")) if k.get("last_used_at") else "never",
            k.get("id"),
        )
        for k in keys
    ]
    return render_table(("NAME", "CREATED (UTC)", "CREATED BY", "LAST USED (UTC)", "KEY ID"), rows)


def new_key(data: dict[str, Any]) -> str:
    return "\n".join(
        (
            f"Created API key {data.get('name')!r} for {data.get('script')}:",
            "",
            f"    {data.get('key')}",
            "",
            NOT_SHOWN_AGAIN,
            "Keys work only while the script is Deployed.",
        )
    )


def fmt_ms(ms: float | None) -> str:
    if ms is None:
        return NONE
    if ms < 1000:
        return f"{ms:.1f} ms"
    return f"{ms / 1000:.2f} s"


def error_summary(error: Any, limit: int = 60) -> str:
    """`Type: message` on one line, cut to `limit` characters."""
    if not isinstance(error, dict):
        return ""
    text = f"{error.get('type') or 'Error'}: {error.get('message') or ''}".strip()
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def executions_table(data: dict[str, Any]) -> str:
    items = data.get("executions") or []
    if not items:
        return f"No executions recorded for {data.get('script', 'this script')}."
    rows = [
        (
            e.get("id"),
            fmt_time(e.get("received_at")),
            e.get("function"),
            f"v{e.get('version')}",
            e.get("key_name"),
            e.get("status"),
            fmt_ms(e.get("queue_ms")),
            fmt_ms(e.get("wall_ms")),
            fmt_ms(e.get("cpu_ms")),
            fmt_bytes(e.get("peak_memory_bytes")),
            error_summary(e.get("error")),
        )
        for e in items
    ]
    headers = ("ID", "RECEIVED (UTC)", "FUNCTION", "VERSION", "KEY", "STATUS", "QUEUE", "RUN",
               "CPU", "PEAK MEMORY", "ERROR")  # fmt: skip
    return render_table(headers, rows)


def execution(e: dict[str, Any]) -> str:
    fields = [
        ("Execution", e.get("id")),
        ("Script", e.get("script")),
        ("Version", f"v{e.get('version')}"),
        ("Function", e.get("function")),
        ("Key", e.get("key_name")),
        ("Status", e.get("status")),
        ("Received", fmt_time(e.get("received_at"))),
        ("Started", fmt_time(e.get("started_at"))),
        ("Ended", fmt_time(e.get("ended_at"))),
        ("Queue time", fmt_ms(e.get("queue_ms"))),
        ("Run time", fmt_ms(e.get("wall_ms"))),
        ("CPU time", fmt_ms(e.get("cpu_ms"))),
        ("Peak memory", fmt_bytes(e.get("peak_memory_bytes"))),
        ("Input size", fmt_bytes(e.get("input_bytes"))),
    ]
    parts = [render_fields(fields)]
    error = e.get("error")
    if isinstance(error, dict):
        head = f"Error\n  {error.get('type') or 'Error'}: {error.get('message') or ''}"
        traceback = (error.get("traceback") or "").rstrip()
        parts.append(head + ("\n" + _indent(traceback) if traceback else ""))
    details = e.get("details") or {}
    step = e.get("function") == "(step)"
    cut = details.get("cut") or {}
    if "inputs" in details:
        title = ("Inputs" if step else "Payload") + _cut_note(cut.get("inputs"))
        parts.append(title + "\n" + _json_block(details["inputs"]))
    if e.get("result") is not None:
        title = ("Outputs" if step else "Result") + _cut_note(cut.get("outputs"))
        parts.append(title + "\n" + _json_block(e["result"]))
    if details.get("logs") or details.get("logs_discarded"):
        lines = [f"{x.get('ts')}  {x.get('message')}" for x in details.get("logs") or ()]
        if details.get("logs_discarded"):
            lines.append(f"({details['logs_discarded']} later messages discarded: 100 KB limit)")
        parts.append("Step log\n" + _indent("\n".join(lines)))
    if e.get("logs"):
        parts.append(("Output\n" if step else "Logs\n") + _indent(str(e["logs"]).rstrip()))
    if isinstance(e.get("http_log"), dict):
        parts.append(render_http.http_log(e["http_log"]))
    return "\n\n".join(parts)


def _cut_note(cut: dict[str, Any] | None) -> str:
    """` (cut: 70.0 KB of JSON, 64.0 KB kept at most)` when the record left it out."""
    if not cut:
        return ""
    return (
        f" (cut: {fmt_bytes(cut.get('bytes'))} of JSON, {fmt_bytes(cut.get('limit'))} kept at most)"
    )


def _json_block(value: Any) -> str:
    return _indent(json.dumps(value, indent=2, ensure_ascii=False))


def files_table(data: dict[str, Any]) -> str:
    files = data.get("files") or []
    if not files:
        return "No uploaded files."
    rows = [
        (f.get("name"), fmt_bytes(f.get("size")), fmt_time(f.get("modified_at"))) for f in files
    ]
    return render_table(("NAME", "SIZE", "MODIFIED (UTC)"), rows)


def _indent(text: str) -> str:
    return "\n".join("  " + line if line else line for line in text.splitlines())

"""How each API object looks to a person: the summary list, the overview, the
deployment history, profiles, runtimes and validation reports.

Pure functions from the API's JSON to text; statuses are shown exactly as the
API writes them (Draft, Deploying, Ready to Deploy, Deployed, Deployment Failed).
"""

from __future__ import annotations

from typing import Any

from daemon.cli.errors import finding_line
from daemon.cli.output import (
    NONE,
    fmt_bytes,
    fmt_duration,
    fmt_time,
    render_fields,
    render_table,
)
from daemon.cli.render_account import autoscaling


def scripts_table(scripts: list[dict[str, Any]]) -> str:
    if not scripts:
        return "No scripts."
    rows = [
        (
            s.get("name"),
            s.get("status"),
            s.get("added_by"),
            fmt_time(s.get("updated_at")),
            s.get("language"),
        )
        for s in scripts
    ]
    return render_table(("SCRIPT NAME", "STATUS", "ADDED BY", "UPDATED ON (UTC)", "LANGUAGE"), rows)


def overview(script: dict[str, Any]) -> str:
    settings = script.get("settings") or {}
    resources = script.get("resources") or {}
    general = [
        ("Name", script.get("name")),
        ("Description", script.get("description")),
        ("Status", script.get("status")),
        ("Language", _language(script)),
        ("Added by", script.get("added_by")),
        ("Created on", fmt_time(script.get("created_at"))),
        ("Updated on", fmt_time(script.get("updated_at"))),
        ("Current version", _current_version(script)),
        ("Functions", ", ".join(script.get("functions") or ()) or NONE),
    ]
    runtime = [
        ("Kind", settings.get("kind") or "functions"),
        *_step_fields(settings.get("step")),
        ("Execution timeout", _seconds(settings.get("timeout_s"))),
        ("Environment", env_text(settings.get("env") or [])),
        ("Egress", egress_text(settings.get("egress") or {})),
        ("Secrets", ", ".join(settings.get("secrets") or []) or NONE),
        ("Async calls", async_text(settings.get("async") or {})),
        ("Concurrency", concurrency_text(settings)),
    ]
    parts = [
        render_fields(general),
        "Runtime settings\n" + render_fields(runtime, indent="  "),
        "Resource allocation\n"
        + render_fields(_resource_fields(resources, script.get("workspace")), indent="  "),
    ]
    deployment = script.get("deployment")
    if deployment:
        parts.append("Latest deployment\n" + render_fields(_version_fields(deployment), "  "))
    if script.get("autoscaling"):
        parts.append(autoscaling(script["autoscaling"]))
    if script.get("replicas"):
        parts.append("Replicas\n" + replicas_table(script["replicas"], indent="  "))
    return "\n\n".join(parts)


def replicas_table(replicas: list[dict[str, Any]], indent: str = "") -> str:
    """Each live replica with its traffic through the egress proxy since it started."""
    rows = []
    for r in replicas:
        egress = r.get("egress")
        traffic: tuple[str, str, str] = (NONE, NONE, "no egress")
        if egress:
            opened, total = egress.get("open_connections"), egress.get("connections")
            idle = egress.get("idle_connections")  # (absent from an older daemon's answer)
            kept = f"{idle} idle, " if idle else ""
            connections = f"{opened} open, {kept}{total} total"
            traffic = (fmt_bytes(egress.get("bytes_out")), fmt_bytes(egress.get("bytes_in")),
                       connections)  # fmt: skip
        rows.append((r.get("name"), r.get("state"), r.get("busy"), *traffic))
    table = render_table(("REPLICA", "STATE", "BUSY", "SENT", "RECEIVED", "CONNECTIONS"), rows)
    return "\n".join(indent + line for line in table.splitlines())


def concurrency_text(settings: dict[str, Any]) -> str:
    """`8 calls per worker, 2 workers per replica` (or `..., workers: one per vCPU`)."""
    workers = settings.get("workers_per_replica")
    plural = "" if workers == 1 else "s"
    shown = f"{workers} worker{plural} per replica" if workers else "workers: one per whole vCPU"
    return f"{settings.get('concurrency', 1)} calls per worker, {shown}"


def async_text(doc: dict[str, Any]) -> str:
    """`retries 1, max event age 6h`."""
    age = doc.get("max_event_age_s", 21600)
    shown = f"{age // 3600}h" if age % 3600 == 0 else f"{age} s"
    return f"retries {doc.get('retries', 0)}, max event age {shown}"


def egress_text(egress: dict[str, Any]) -> str:
    """`allowlist: api.example.com, *.example.org`, `public (HTTPS not inspected)`."""
    text = egress.get("policy") or "default (egress.default_policy)"
    if egress.get("allow_hosts"):
        text += ": " + ", ".join(egress["allow_hosts"])
    if egress.get("inspect") is False:
        text += " (HTTPS not inspected)"
    return text


def env_text(env: list[dict[str, Any]]) -> str:
    """`KEY=value, TOKEN=******** (secret)`; the API already masks secret values."""
    if not env:
        return NONE
    items = []
    for var in env:
        text = f"{var.get('key')}={var.get('value', '')}"
        items.append(text + " (secret)" if var.get("secret") else text)
    return ", ".join(items)


def history(data: dict[str, Any]) -> str:
    versions = data.get("versions") or []
    if not versions:
        text = "No deployments yet."
    else:
        rows = [
            (
                f"v{v.get('number')}",
                v.get("display_name"),
                v.get("status"),
                v.get("deployed_by"),
                fmt_time(v.get("started_at")),
                fmt_time(v.get("ended_at")),
                fmt_duration(v.get("duration_s")),
                _granted(v),
                async_text(((v.get("config") or {}).get("settings") or {}).get("async") or {}),
                v.get("failure_reason"),
            )
            for v in versions
        ]
        headers = (
            "VERSION",
            "NAME",
            "STATUS",
            "DEPLOYED BY",
            "STARTED (UTC)",
            "ENDED (UTC)",
            "DURATION",
            "SECRETS",
            "ASYNC CALLS",
            "FAILURE REASON",
        )
        text = render_table(headers, [_one_line(row) for row in rows])
        lines = [f"v{v.get('number')}: {version_settings(v)}" for v in versions]
        text += "\n\nSettings of each version\n" + "\n".join("  " + ln for ln in lines)
    events = data.get("events") or []
    if events:
        event_rows = [
            (fmt_time(e.get("at")), e.get("kind"), e.get("actor"), detail_text(e.get("detail")))
            for e in events
        ]
        text += "\n\nEvents\n" + render_table(
            ("AT (UTC)", "EVENT", "BY", "DETAIL"), [_one_line(row) for row in event_rows]
        )
    return text


def _granted(version: dict[str, Any]) -> str:
    """The names of the integration secrets the version was deployed with (never values)."""
    settings = (version.get("config") or {}).get("settings") or {}
    return ", ".join(settings.get("secrets") or ()) or NONE


def detail_text(detail: Any, prefix: str = "") -> str:
    """An event's detail object as `key=value, ...`, nested keys dotted and long
    values (hashes, tracebacks) cut, so that an event stays one short line."""
    if not isinstance(detail, dict):
        return "" if detail is None else _cut(str(detail))
    parts = []
    for key, value in detail.items():
        if isinstance(value, dict):
            parts.append(detail_text(value, f"{prefix}{key}."))
        else:
            parts.append(f"{prefix}{key}={_cut(str(value))}")
    return ", ".join(p for p in parts if p)


def _cut(text: str, limit: int = 40) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def version_line(version: dict[str, Any]) -> str:
    return f"v{version.get('number')} {version.get('display_name')}: {version.get('status')}"


def profiles_table(profiles: list[dict[str, Any]]) -> str:
    rows = [
        (
            p.get("name"),
            p.get("label"),
            f"{p.get('vcpus')} vCPU, {fmt_bytes(p.get('memory_bytes'))}",
            fmt_bytes(p.get("workspace_bytes")),
            p.get("credits_per_hour"),
            "yes" if p.get("default") else "",
        )
        for p in profiles
    ]
    titles = ("PROFILE", "HARDWARE", "ACTUAL", "WORKSPACE", "CREDITS/HOUR", "DEFAULT")
    return render_table(titles, rows)


def runtimes_table(runtimes: list[dict[str, Any]]) -> str:
    rows = [
        (r.get("language"), r.get("version"), r.get("path"), "yes" if r.get("default") else "",
         (r.get("base_env") or {}).get("state", ""))
        for r in runtimes
    ]  # fmt: skip
    table = render_table(("LANGUAGE", "VERSION", "PATH", "DEFAULT", "STEPS BASE ENV"), rows)
    packages = next((r["base_env"]["packages"] for r in runtimes if r.get("base_env")), None)
    if packages:
        table += "\nBase packages of code steps: " + ", ".join(packages)
    return table


def validation_report(report: dict[str, Any]) -> str:
    errors = report.get("errors") or []
    warnings = report.get("warnings") or []
    if report.get("ok"):
        head = f"Valid {report.get('language') or ''} project".replace("  ", " ")
    else:
        head = f"Not valid: {_count(len(errors), 'error')}, {_count(len(warnings), 'warning')}"
    lines = [head]
    lines += ["  " + finding_line(f) for f in (*errors, *warnings)]
    functions = report.get("functions") or []
    lines.append("Functions: " + (", ".join(functions) if functions else NONE))
    if report.get("entries") is not None:
        size = fmt_bytes(report.get("unpacked_bytes"))
        lines.append(f"Files: {report.get('entries')} ({size} unpacked)")
    return "\n".join(lines)


def _language(script: dict[str, Any]) -> str:
    version = script.get("language_version")
    return f"{script.get('language')} {version}" if version else str(script.get("language"))


def _current_version(script: dict[str, Any]) -> str:
    number = script.get("current_version")
    if number is None:
        return NONE
    deployment = script.get("deployment") or {}
    if deployment.get("number") == number and deployment.get("display_name"):
        return f"v{number} ({deployment['display_name']})"
    return f"v{number}"


def _resource_fields(
    resources: dict[str, Any], workspace: dict[str, Any] | None = None
) -> list[tuple[str, Any]]:
    low, high = resources.get("min_replicas"), resources.get("max_replicas")
    target = resources.get("cpu_target")
    target_text = NONE if target is None else f"{target} %"
    if low is not None and low == high:
        target_text += " (not used: min = max)"
    return [
        ("Replicas", f"min {low}, max {high}"),
        ("CPU target", target_text),
        ("Hardware profile", resources.get("profile")),
        ("Memory limit", memory_text(resources)),
        ("Workspace", _workspace_text(workspace or {})),
    ]


def memory_text(resources: dict[str, Any]) -> str:
    """`1.0 GB (a step's default)` or `the profile's` (with its size when the API gave it)."""
    own = resources.get("memory_bytes")
    if own is not None:
        return f"{fmt_bytes(own)} (a step's default, steps.memory_mib)"
    limit = resources.get("memory_limit_bytes")
    return "the profile's" if limit is None else f"{fmt_bytes(limit)} (the profile's)"


def _step_fields(step: dict[str, Any] | None) -> list[tuple[str, Any]]:
    if not step:
        return []
    return [("Inputs", _declared(step.get("inputs"))), ("Outputs", _declared(step.get("outputs")))]


def _declared(names: dict[str, str] | None) -> str:
    return ", ".join(f"{name}:{code}" for name, code in (names or {}).items()) or NONE


def version_settings(version: dict[str, Any]) -> str:
    """One line of what a version runs with: `timeout 30 s, memory 1.0 GB (a step's
    default), profile tiny; step: inputs name:s; outputs greeting:s`."""
    config = version.get("config") or {}
    settings, resources = config.get("settings") or {}, config.get("resources") or {}
    own = resources.get("memory_bytes")
    memory = f"{fmt_bytes(own)} (a step's default)" if own is not None else "the profile's"
    text = (f"timeout {_seconds(settings.get('timeout_s'))}, memory {memory}, "
            f"profile {resources.get('profile')}, {concurrency_text(settings)}")  # fmt: skip
    step = settings.get("step")
    if step:
        text += f"; step: inputs {_declared(step.get('inputs'))}; "
        text += f"outputs {_declared(step.get('outputs'))}"
    return text


def _workspace_text(workspace: dict[str, Any]) -> str:
    """`12.0 MB used of 1.0 GB`, or only the limit while it is not mounted."""
    limit = fmt_bytes(workspace.get("limit_bytes"))
    used = workspace.get("used_bytes")
    return f"{limit} limit" if used is None else f"{fmt_bytes(used)} used of {limit}"


def _version_fields(version: dict[str, Any]) -> list[tuple[str, Any]]:
    fields: list[tuple[str, Any]] = [
        ("Version", f"v{version.get('number')} ({version.get('display_name')})"),
        ("Status", version.get("status")),
        ("Phase", version.get("phase")),
        ("Deployed by", version.get("deployed_by")),
        ("Started", fmt_time(version.get("started_at"))),
        ("Ended", fmt_time(version.get("ended_at"))),
        ("Duration", fmt_duration(version.get("duration_s"))),
    ]
    if version.get("failure_reason"):
        fields.append(("Failure reason", _one_line((version["failure_reason"],))[0]))
    return fields


def _seconds(value: Any) -> str:
    return NONE if value is None else f"{value} s"


def _count(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _one_line(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """Table cells must stay on one line: a multi-line reason shows its last line."""
    out = []
    for cell in row:
        if isinstance(cell, str) and "\n" in cell:
            lines = [ln for ln in cell.strip().splitlines() if ln.strip()]
            cell = lines[-1] if lines else ""
        out.append(cell)
    return tuple(out)

"""The HTTP request log of an execution (daemon/egress) as text: one line per request,
then the refusals with their rule; `--json` gives the whole log (headers, bodies)."""

from __future__ import annotations

from typing import Any

from daemon.cli.output import fmt_bytes


def http_log(log: dict[str, Any]) -> str:
    head = (
        f"HTTP requests\n  {log.get('total', 0)} sent, {len(log.get('refusals') or [])} refused,"
        f" {log.get('not_detailed', 0)} past the first 100 not detailed;"
        f" {fmt_bytes(log.get('bytes_out'))} out, {fmt_bytes(log.get('bytes_in'))} in"
    )
    lines = [head]
    for entry in log.get("requests") or []:
        lines.append("  " + _request(entry))
    for refusal in log.get("refusals") or []:
        lines.append(f"  refused {refusal.get('method')} {refusal.get('target')}")
        lines.append(f"    {refusal.get('message')}")
    return "\n".join(lines)


def _request(entry: dict[str, Any]) -> str:
    sizes = f"{fmt_bytes(entry.get('bytes_out'))} out, {fmt_bytes(entry.get('bytes_in'))} in"
    took = f"{entry.get('duration_ms', 0):.1f} ms"
    if entry.get("kind") == "tunnel":
        what = f"HTTPS {entry.get('host')}:{entry.get('port')} (not inspected)"
        outcome = entry.get("error") or "tunnel"
    else:
        what = f"{entry.get('method')} {entry.get('url')}"
        outcome = entry.get("error") or entry.get("status")
    return f"{what} -> {outcome} ({took}, {sizes})"

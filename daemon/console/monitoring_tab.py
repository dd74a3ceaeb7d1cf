"""A script's Monitoring tab: calls per minute by status and their latency (p50,
p99) over the last hour, and, for its autoscaling, its replicas and CPU over time.

The numbers come from daemon/lifecycle/monitoring.py (the store, through the service
layer); this module only turns them into charts (daemon/console/charts.py) and the
tables beside them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from markupsafe import Markup

from daemon.console import charts
from daemon.console.charts import COLOURS, Guide, Series
from daemon.console.script_pages import tab_context
from daemon.console.web import lifecycle, render
from daemon.lifecycle import monitoring
from daemon.lifecycle.monitoring import EXECUTION_STATUSES, CallActivity, ScalingHistory

__all__ = ["add_routes"]

LABEL_EVERY_MIN = 10  # an x label every 10 minutes


async def monitoring_page(request: web.Request) -> web.Response:
    context = await tab_context(request, "monitoring")
    lc, script = lifecycle(request), context["script"]
    activity = await monitoring.call_activity(lc, script)
    history = await monitoring.scaling_history(lc, script)
    context.update(
        calls=calls_view(activity),
        scaling=scaling_view(history),
        swatch=legend_swatch,
        colours=COLOURS,
    )
    return render(request, "monitoring.html", context)


def _hhmm(moment: datetime) -> str:
    return moment.strftime("%H:%M")


def calls_view(activity: CallActivity) -> dict[str, Any]:
    """The calls chart, the latency chart, their legends and table rows."""
    minutes = activity.minutes
    labels = [(i, _hhmm(m.start)) for i, m in enumerate(minutes) if i % LABEL_EVERY_MIN == 0]
    busiest = max(minutes, key=lambda m: m.total, default=None)
    said = f"{activity.total} calls in the last hour"
    if busiest is not None and busiest.total:
        said += f"; the busiest minute, {_hhmm(busiest.start)} UTC, had {busiest.total}"
    calls_svg = charts.stacked_bars(
        "Calls per minute by status, last hour", said + ".",
        [m.counts for m in minutes], EXECUTION_STATUSES, labels,
    )  # fmt: skip
    p99s = [m.p99_ms for m in minutes if m.p99_ms is not None]
    latency_said = (
        f"Run time per minute: the highest p99 was {max(p99s):.1f} ms." if p99s
        else "No call ran in the last hour."
    )  # fmt: skip
    lines = [
        Series("p50", COLOURS["p50"], [(i + 0.5, m.p50_ms) for i, m in enumerate(minutes)]),
        Series("p99", COLOURS["p99"], [(i + 0.5, m.p99_ms) for i, m in enumerate(minutes)],
               dashed=True),
    ]  # fmt: skip
    latency_svg = charts.line_chart(
        "Latency p50 and p99 per minute, last hour", latency_said, lines,
        (0, len(minutes)), [(i + 0.5, text) for i, text in labels], " ms",
    )  # fmt: skip
    used = [s for s in EXECUTION_STATUSES if any(m.counts.get(s) for m in minutes)]
    return {
        "svg": calls_svg,
        "latency_svg": latency_svg,
        "legend": [(s, COLOURS[s]) for s in (used or ["ok"])],
        "latency_legend": [("p50", COLOURS["p50"], False), ("p99", COLOURS["p99"], True)],
        "statuses": used,
        "rows": [m for m in minutes if m.total],
        "total": activity.total,
        "capped": activity.capped,
    }


def scaling_view(history: ScalingHistory) -> dict[str, Any]:
    """The replicas chart and the CPU chart, from the samples of the window."""
    start, end = history.start.timestamp(), history.end.timestamp()
    ticks = range(int(start // 600 + 1) * 600, int(end) + 1, LABEL_EVERY_MIN * 60)
    labels = [(float(t), _hhmm(datetime.fromtimestamp(t, UTC))) for t in ticks]
    samples = history.samples
    at = [s.at_ms / 1000 for s in samples]
    replicas = Series(
        "replicas",
        COLOURS["replicas"],
        [(x, s.replicas) for x, s in zip(at, samples, strict=True)],
        step=True,
    )
    bounds = [Guide(f"max {history.max_replicas}", history.max_replicas, COLOURS["bounds"])]
    if history.min_replicas != history.max_replicas:
        bounds.append(Guide(f"min {history.min_replicas}", history.min_replicas,
                            COLOURS["bounds"]))  # fmt: skip
    cpu = Series("CPU", COLOURS["cpu"], [(x, s.cpu_pct) for x, s in zip(at, samples, strict=True)])
    target = history.cpu_target
    guides = [Guide(f"target {target} %", target, COLOURS["target"])] if target else []
    return {
        "replicas_svg": charts.line_chart(
            "Replicas over time, last hour", _replicas_said(history), [replicas],
            (start, end), labels, "", bounds, y_floor=history.max_replicas + 1,
        ),
        "cpu_svg": charts.line_chart(
            "CPU over time, last hour", _cpu_said(history), [cpu], (start, end), labels,
            " %", guides, y_floor=100,
        ),
        "rows": list(reversed(samples)),
        "guides": bounds + guides,
        "autoscaled": target is not None,
    }  # fmt: skip


def _replicas_said(history: ScalingHistory) -> str:
    if not history.samples:
        return "No samples in the last hour: the script was not serving."
    counts = [s.replicas for s in history.samples]
    return (
        f"Between {min(counts)} and {max(counts)} replicas in the last hour "
        f"(now {counts[-1]}; allowed {history.min_replicas} to {history.max_replicas})."
    )


def _cpu_said(history: ScalingHistory) -> str:
    known = [s.cpu_pct for s in history.samples if s.cpu_pct is not None]
    if not known:
        return "No CPU measured in the last hour."
    target = f"; the target is {history.cpu_target} %" if history.cpu_target else ""
    return (
        f"Average CPU of the ready replicas between {min(known):.0f} % and "
        f"{max(known):.0f} % of their quota{target}."
    )


def legend_swatch(colour: str, dashed: bool = False) -> Markup:
    """A small line in a legend, the colour of its series (SVG: no inline style)."""
    dash = ' stroke-dasharray="3 3"' if dashed else ""
    return Markup(
        '<svg class="swatch" width="22" height="10" aria-hidden="true">'
        f'<line x1="0" y1="5" x2="22" y2="5" stroke="{colour}" stroke-width="4"{dash}/></svg>'
    )


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/scripts/{name}/monitoring", monitoring_page)

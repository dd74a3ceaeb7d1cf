"""Charts as plain SVG made on the server: no script, no library, no build step.

Two shapes: stacked bars (calls per minute by status) and lines over time (latency,
replicas, CPU), with optional dashed guides (a target, bounds). Each chart is an
`<svg role="img">` whose <title> and <desc> say what it shows in words; the pages
add a legend and the same numbers as a table. Colours are presentation attributes
(the console's Content-Security-Policy allows no inline style) and have at least
3:1 contrast on white, the WCAG AA level for graphics; text is #374151 (10:1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import count

from markupsafe import Markup, escape

__all__ = ["COLOURS", "TEXT", "Guide", "Series", "line_chart", "nice_ticks", "stacked_bars"]

WIDTH, HEIGHT = 720, 220
LEFT, RIGHT, TOP, BOTTOM = 52, 14, 12, 28  # the plot's margins (axis labels)
TEXT = "#374151"
GRID = "#d0d5dc"
COLOURS = {
    "ok": "#15803d", "error": "#b91c1c", "timeout": "#b45309", "oom": "#7c3aed",
    "crashed": "#be185d", "rejected": "#4b5563", "p50": "#1d4ed8", "p99": "#b91c1c",
    "replicas": "#1d4ed8", "ready": "#15803d", "cpu": "#15803d", "target": "#b45309",
    "bounds": "#4b5563",
}  # fmt: skip
_ids = count(1)  # unique ids for <title>/<desc> when a page has several charts


@dataclass(frozen=True)
class Series:
    """One line: (x, y) points; a y of None breaks the line there."""

    name: str
    colour: str
    points: Sequence[tuple[float, float | None]]
    step: bool = False  # hold each value until the next point (a count, not a rate)
    dashed: bool = False


@dataclass(frozen=True)
class Guide:
    """A dashed horizontal line at `value`, labelled."""

    label: str
    value: float
    colour: str


def nice_ticks(highest: float, steps: int = 4) -> list[float]:
    """Round tick values from 0 covering `highest` (1, 2, 2.5 or 5 times a power of 10)."""
    if highest <= 0:
        return [0.0, 1.0]
    raw = highest / steps
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    return [i * step for i in range(math.ceil(highest / step - 1e-9) + 1)]


def _number(value: float) -> str:
    return f"{value:g}" if value < 10_000 else f"{value / 1000:g}k"


class _Plot:
    """Data to pixels: x from x_min..x_max, y from 0..y_top."""

    def __init__(self, x_min: float, x_max: float, y_top: float) -> None:
        self.x_min, self.x_span = x_min, max(x_max - x_min, 1e-9)
        self.y_top = y_top or 1.0
        self.w, self.h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(self, value: float) -> float:
        return round(LEFT + (value - self.x_min) / self.x_span * self.w, 1)

    def y(self, value: float) -> float:
        return round(TOP + self.h - min(value, self.y_top) / self.y_top * self.h, 1)


def _frame(title: str, desc: str, body: list[str]) -> Markup:
    n = next(_ids)
    head = (
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-labelledby="chart-{n}-title chart-{n}-desc" xmlns="http://www.w3.org/2000/svg">'
        f'<title id="chart-{n}-title">{escape(title)}</title>'
        f'<desc id="chart-{n}-desc">{escape(desc)}</desc>'
    )
    return Markup(head + "".join(body) + "</svg>")


def _y_axis(plot: _Plot, ticks: list[float], unit: str) -> list[str]:
    out = []
    for tick in ticks:
        y = plot.y(tick)
        out.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y}" y2="{y}" stroke="{GRID}"/>')
        label = escape(_number(tick) + unit)
        out.append(f'<text x="{LEFT - 6}" y="{y + 4}" text-anchor="end" font-size="11" '
                   f'fill="{TEXT}">{label}</text>')  # fmt: skip
    return out


def _x_labels(plot: _Plot, labels: Sequence[tuple[float, str]]) -> list[str]:
    y = HEIGHT - 8
    return [
        f'<text x="{plot.x(x)}" y="{y}" text-anchor="middle" font-size="11" '
        f'fill="{TEXT}">{escape(text)}</text>'
        for x, text in labels
    ]


def stacked_bars(
    title: str,
    desc: str,
    stacks: Sequence[dict[str, int]],
    order: Sequence[str],
    x_labels: Sequence[tuple[int, str]],
) -> Markup:
    """One bar per slot (stacks[i]: name -> value), stacked in `order`; x_labels
    name some slots by index."""
    ticks = nice_ticks(max((sum(s.values()) for s in stacks), default=0))
    plot = _Plot(0, len(stacks), ticks[-1])
    body = _y_axis(plot, ticks, "")
    width = max(plot.w / max(len(stacks), 1) - 2, 1)
    for i, stack in enumerate(stacks):
        base = 0
        for name in order:
            value = stack.get(name, 0)
            if value <= 0:
                continue
            top, bottom = plot.y(base + value), plot.y(base)
            body.append(
                f'<rect x="{plot.x(i) + 1}" y="{top}" width="{round(width, 1)}" '
                f'height="{round(bottom - top, 1)}" fill="{COLOURS.get(name, TEXT)}"/>'
            )
            base += value
    body += _x_labels(plot, [(i + 0.5, text) for i, text in x_labels])
    return _frame(title, desc, body)


def line_chart(
    title: str,
    desc: str,
    series: Sequence[Series],
    x_range: tuple[float, float],
    x_labels: Sequence[tuple[float, str]],
    unit: str = "",
    guides: Sequence[Guide] = (),
    y_floor: float = 0,
) -> Markup:
    """Lines over x_range (x_labels name some x values); the y axis starts at 0 and
    reaches past the highest value, guide or `y_floor`."""
    values = [y for s in series for _, y in s.points if y is not None]
    ticks = nice_ticks(max([*values, *(g.value for g in guides), y_floor], default=0))
    plot = _Plot(x_range[0], x_range[1], ticks[-1])
    body = _y_axis(plot, ticks, unit)
    for guide in guides:
        y = plot.y(guide.value)
        body.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y}" y2="{y}" '
            f'stroke="{guide.colour}" stroke-width="1.5" stroke-dasharray="6 4"/>'
        )
    for s in series:
        body += _paths(plot, s)
    body += _x_labels(plot, x_labels)
    return _frame(title, desc, body)


def _paths(plot: _Plot, s: Series) -> list[str]:
    """The series as polylines, one per run of known values (a lone point: a dot)."""
    runs: list[list[tuple[float, float]]] = [[]]
    for x, y in s.points:
        if y is None:
            runs.append([])
            continue
        if s.step and runs[-1]:
            runs[-1].append((plot.x(x), runs[-1][-1][1]))
        runs[-1].append((plot.x(x), plot.y(y)))
    dash = ' stroke-dasharray="3 3"' if s.dashed else ""
    out = []
    for run in runs:
        if len(run) == 1:
            (x, y), = run  # fmt: skip
            out.append(f'<circle cx="{x}" cy="{y}" r="2.5" fill="{s.colour}"/>')
        elif run:
            points = " ".join(f"{x},{y}" for x, y in run)
            out.append(f'<polyline points="{points}" fill="none" stroke="{s.colour}" '
                       f'stroke-width="2"{dash}/>')  # fmt: skip
    return out

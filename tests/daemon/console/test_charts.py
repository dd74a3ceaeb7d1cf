"""The console's SVG charts: well-formed SVG with its words (title, desc), bars and
lines where the data puts them, round axis ticks, escaped text, gaps for no data."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from daemon.console.charts import (
    COLOURS,
    TEXT,
    Guide,
    Series,
    line_chart,
    nice_ticks,
    stacked_bars,
)

NS = "{http://www.w3.org/2000/svg}"


def parse(markup: str) -> ET.Element:
    return ET.fromstring(markup)


def test_ticks_are_round_and_cover_the_highest_value() -> None:
    assert nice_ticks(0) == [0.0, 1.0]
    assert nice_ticks(3) == [0, 1, 2, 3]
    assert nice_ticks(7) == [0, 2, 4, 6, 8]
    assert nice_ticks(100) == [0, 25, 50, 75, 100]
    assert nice_ticks(0.37) == pytest.approx([0, 0.1, 0.2, 0.3, 0.4])


def test_stacked_bars_are_accessible_svg_with_one_rect_per_nonzero_status() -> None:
    svg = parse(stacked_bars(
        "Calls <per> minute", "3 calls & more", [{"ok": 2, "error": 1}, {}, {"ok": 3}],
        ("ok", "error"), [(0, "12:00"), (2, "12:02")],
    ))  # fmt: skip
    assert svg.get("role") == "img"
    title, desc = svg.find(f"{NS}title"), svg.find(f"{NS}desc")
    assert title is not None and title.text == "Calls <per> minute"  # escaped, then parsed
    assert desc is not None and desc.text == "3 calls & more"
    assert svg.get("aria-labelledby") == f"{title.get('id')} {desc.get('id')}"
    rects = svg.findall(f"{NS}rect")
    assert [r.get("fill") for r in rects] == [COLOURS["ok"], COLOURS["error"], COLOURS["ok"]]
    # the first bar's two parts stack: error sits on ok, and 3 calls reach the top tick
    ok, error, third = (float(r.get("y", 0)) for r in rects)
    assert error < ok and third == error
    labels = [t.text for t in svg.findall(f"{NS}text")]
    assert "12:00" in labels and "12:02" in labels and "3" in labels


def test_line_chart_breaks_at_missing_values_and_draws_guides() -> None:
    points = [(0.0, 10.0), (1.0, 20.0), (2.0, None), (3.0, 5.0)]
    svg = parse(line_chart(
        "Latency", "p50", [Series("p50", "#1d4ed8", points)], (0, 3), [(0, "a")], " ms",
        [Guide("target 75 %", 75, "#b45309")],
    ))  # fmt: skip
    lines = svg.findall(f"{NS}polyline")
    assert len(lines) == 1 and len(lines[0].get("points", "").split()) == 2
    assert len(svg.findall(f"{NS}circle")) == 1  # the lone point after the gap
    dashed = [g for g in svg.findall(f"{NS}line") if g.get("stroke-dasharray")]
    assert len(dashed) == 1 and dashed[0].get("stroke") == "#b45309"
    assert "80 ms" in [t.text for t in svg.findall(f"{NS}text")]  # the axis reaches the guide


def test_a_step_series_holds_its_value_until_the_next_point() -> None:
    svg = parse(line_chart(
        "Replicas", "", [Series("r", "#000", [(0, 1), (10, 3)], step=True)], (0, 10), [],
    ))  # fmt: skip
    points = svg.findall(f"{NS}polyline")[0].get("points", "").split()
    assert len(points) == 3 and points[0].split(",")[1] == points[1].split(",")[1]


def test_charts_on_one_page_have_distinct_ids() -> None:
    a = parse(line_chart("a", "", [], (0, 1), []))
    b = parse(line_chart("b", "", [], (0, 1), []))
    assert a.get("aria-labelledby") != b.get("aria-labelledby")


def _luminance(colour: str) -> float:
    channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def test_colours_pass_wcag_aa_on_white() -> None:
    """3:1 for the lines and bars (graphics), 4.5:1 for the axis text."""
    white = _luminance("#ffffff")

    def contrast(colour: str) -> float:
        return (white + 0.05) / (_luminance(colour) + 0.05)

    assert all(contrast(c) >= 3 for c in COLOURS.values()), COLOURS
    assert contrast(TEXT) >= 4.5

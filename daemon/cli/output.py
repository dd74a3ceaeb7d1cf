"""Formatting for people: aligned tables, key/value blocks, times, sizes, progress.

Pure functions that return strings (easy to test); only `emit_json`, `Progress`
and `Ticker` write, and they write to the streams they are given.
"""

from __future__ import annotations

import json
import secrets
import sys
import time
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, TextIO

NONE = "-"


def render_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Columns aligned on the widest cell; the last column is not padded."""
    cells = [[cell_text(c) for c in row] for row in rows]
    table = [list(headers), *cells]
    widths = [max(len(row[i]) for row in table) for i in range(len(headers))]
    lines = []
    for row in table:
        padded = [row[i].ljust(widths[i]) for i in range(len(row) - 1)] + [row[-1]]
        lines.append("  ".join(padded).rstrip())
    return "\n".join(lines)


def render_fields(fields: Sequence[tuple[str, Any]], indent: str = "") -> str:
    """`Label:  value` lines, values aligned in one column."""
    width = max((len(label) for label, _ in fields), default=0) + 1
    return "\n".join(
        f"{indent}{(label + ':').ljust(width)}  {cell_text(value)}".rstrip()
        for label, value in fields
    )


def cell_text(value: Any) -> str:
    if value is None or value == "":
        return NONE
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def fmt_time(iso: str | None) -> str:
    """`2026-11-22T19:11:05.123Z` -> `2026-11-22 19:11:05` (UTC, as the API gives it)."""
    if not iso:
        return NONE
    try:
        moment = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return iso
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return NONE
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def fmt_bytes(size: float | None) -> str:
    if size is None:
        return NONE
    for unit in ("B", "KB", "MB", "GB"):
        if abs(size) < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


def emit_json(value: Any, stream: TextIO | None = None) -> None:
    stream = stream or sys.stdout
    stream.write(exact_json(value, indent=2) + "\n")


def exact_json(value: Any, indent: int | None = None) -> str:
    """JSON text in which a Decimal (a number parsed with parse_float=Decimal) is
    written with exactly its digits: json.dumps refuses Decimals, and a float would
    round them. Each Decimal is dumped as a unique placeholder string first, then
    the quoted placeholder is replaced by the number's text."""
    numbers: dict[str, str] = {}

    def swap(item: Any) -> Any:
        if isinstance(item, Decimal):
            if not item.is_finite():
                raise ValueError(f"{item} is not a JSON number")
            mark = f"@@exact-{secrets.token_hex(8)}@@"
            numbers[f'"{mark}"'] = str(item)
            return mark
        if isinstance(item, list | tuple):
            return [swap(x) for x in item]
        if isinstance(item, dict):
            return {k: swap(v) for k, v in item.items()}
        return item

    text = json.dumps(swap(value), indent=indent, ensure_ascii=False)
    for mark, digits in numbers.items():
        text = text.replace(mark, digits, 1)
    return text


def progress_bar(done: int, total: int | None, width: int = 30) -> str:
    """`[#######.......]  45%  12.0 MB / 26.6 MB` (no bar when the total is unknown)."""
    if not total:
        return f"{fmt_bytes(done)}"
    share = min(done / total, 1.0)
    filled = int(share * width)
    bar = "#" * filled + "." * (width - filled)
    return f"[{bar}] {share * 100:3.0f}%  {fmt_bytes(done)} / {fmt_bytes(total)}"


class Progress:
    """A progress bar redrawn in place on a terminal, at most ten times a second."""

    def __init__(self, label: str, stream: TextIO) -> None:
        self.label = label
        self.stream = stream
        self.last_draw = 0.0
        self.last_done = -1

    def __call__(self, done: int, total: int | None) -> None:
        now = time.monotonic()
        if done == self.last_done or (now - self.last_draw < 0.1 and done != total):
            return
        self.last_draw, self.last_done = now, done
        self.stream.write(f"\r{self.label} {progress_bar(done, total)}")
        self.stream.flush()

    def finish(self) -> None:
        if self.last_draw:
            self.stream.write("\n")
            self.stream.flush()


class Ticker:
    """Deploy progress on stderr: one line per phase change, plus on a terminal a
    line that keeps the elapsed time current between changes."""

    def __init__(self, stream: TextIO, start: float | None = None) -> None:
        self.stream = stream
        self.start = time.monotonic() if start is None else start
        self.tty = stream.isatty()
        self.last: str | None = None
        self.live = False

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def update(self, state: str) -> None:
        line = f"[{fmt_duration(self.elapsed()):>6}] {state}"
        changed = state != self.last
        self.last = state
        if self.tty:
            # Keep the finished phase's line, redraw the current one in place.
            if changed and self.live:
                self.stream.write("\n")
            self.stream.write("\r\033[K" + line)
            self.live = True
        elif changed:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.live:
            self.stream.write("\n")
            self.live = False
        self.stream.flush()

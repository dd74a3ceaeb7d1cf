"""The templates' filters and globals: times, sizes, JSON, the status labels."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import jinja2
from aiohttp import web

from daemon.console.pages import STATUS_CLASSES
from daemon.lifecycle.status_table import allows

__all__ = ["install"]

LANGUAGES = {"python": "Python", "javascript": "JavaScript"}


def when(iso: str | None) -> str:
    """An ISO time as people read it, in UTC."""
    if not iso:
        return "-"
    try:
        moment = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return iso
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def unix_time(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def size(n: int | None) -> str:
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def install(env: jinja2.Environment, app: web.Application) -> None:
    def static(name: str) -> str:
        return str(app.router["static"].url_for(filename=name))

    env.globals.update(static=static, status_classes=STATUS_CLASSES, allows=allows)
    env.filters.update(when=when, unix_time=unix_time, bytes=size, ms=ms, pretty=pretty)
    env.filters["language"] = lambda x: LANGUAGES.get(x, x)

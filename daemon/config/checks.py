"""The value checkers shared by daemon/config/loader.py and daemon/config/account.py.

Each checker takes the dotted key and the raw TOML value and returns the checked
value, or raises the `ConfigError` built by `fail`, whose message names the key, the
value and what is allowed, the same wording for every section of the file.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from daemon.core.errors import ConfigError

# key, raw value -> checked value
Checker = Callable[[str, object], Any]


def fail(key: str, value: object, allowed: str) -> ConfigError:
    """The error for one refused value (the caller raises it)."""
    return ConfigError(f"config key {key} = {value!r} is not allowed: {allowed}")


def integer(lo: int, hi: int) -> Callable[[str, object], int]:
    """An integer from lo to hi; a boolean is refused (TOML true is not 1)."""

    def check(key: str, value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise fail(key, value, f"an integer from {lo} to {hi}")
        return value

    return check


def number(lo: float, hi: float) -> Callable[[str, object], float]:
    """An integer or float from lo to hi, returned as a float."""

    def check(key: str, value: object) -> float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if not ok or not lo <= value <= hi:  # type: ignore[operator]
            raise fail(key, value, f"a number from {lo:g} to {hi:g}")
        return float(value)  # type: ignore[arg-type]

    return check


def boolean(key: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise fail(key, value, "true or false")
    return value


def text(key: str, value: object) -> str:
    if not isinstance(value, str):
        raise fail(key, value, "a string")
    return value


def abs_path(key: str, value: object) -> Path:
    if not isinstance(value, str) or not value.startswith("/"):
        raise fail(key, value, "an absolute path (a string starting with /)")
    return Path(value)


def paths(key: str, value: object) -> tuple[Path, ...]:
    if not isinstance(value, list):
        raise fail(key, value, "a list of absolute paths")
    return tuple(abs_path(f"{key}[{i}]", v) for i, v in enumerate(value))


def flatten(doc: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested tables -> one level of dotted keys ({"a": {"b": 1}} -> {"a.b": 1})."""
    flat: dict[str, Any] = {}
    for key, value in doc.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat

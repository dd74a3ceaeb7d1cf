"""The Python codec of runtimes/python/typed.py, loaded by path (the harness
loads it the same way), and helpers to compare typed values by meaning."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

TYPED_PY = Path(__file__).resolve().parents[2] / "runtimes" / "python" / "typed.py"


def _load() -> ModuleType:
    name = "_scriptd_typed"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, TYPED_PY)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


typed = _load()


def decoded(code: str, wire: Any) -> Any:
    return typed.decode(typed.parse_type(code), wire, "value")


def same_values(code: str, got: Any, sent: Any) -> bool:
    """Whether two typed values of `code` mean the same (as Python decodes them):
    the same instant, the same decimal number, the same UUID in any case."""
    if typed.parse_type(code).kind == "l":  # plain JSON: 1e16 may come back as 10000000000000000
        return bool(_floats(decoded(code, got)) == _floats(decoded(code, sent)))
    return bool(decoded(code, got) == decoded(code, sent))


def _floats(value: Any) -> Any:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, list):
        return [_floats(x) for x in value]
    if isinstance(value, dict):
        return {k: _floats(v) for k, v in value.items()}
    return value


# --- hypothesis strategies: Python values of each type code -----------------------

import datetime  # noqa: E402
import uuid  # noqa: E402

from hypothesis import strategies as st  # noqa: E402

OFFSETS = st.integers(-18 * 60 + 1, 18 * 60 - 1).map(
    lambda minutes: datetime.timezone(datetime.timedelta(minutes=minutes))
)
SAFE_INT = st.integers(-(2**53) + 1, 2**53 - 1)


def aware_datetimes(millis: bool) -> st.SearchStrategy[datetime.datetime]:
    """Aware datetimes; millis: millisecond precision (what a JavaScript Date holds)."""
    values = st.datetimes(timezones=OFFSETS)
    if millis:
        values = values.map(lambda v: v.replace(microsecond=v.microsecond // 1000 * 1000))
    # Years 1..9999 in every offset: keep a day away from the ends of the range.
    lowest = datetime.datetime(1, 1, 2, tzinfo=datetime.UTC)
    highest = datetime.datetime(9999, 12, 30, tzinfo=datetime.UTC)
    return values.filter(lambda v: lowest <= v <= highest)


def plain_json(safe_ints: bool) -> st.SearchStrategy[Any]:
    leaves = st.none() | st.booleans() | st.text(max_size=8)
    leaves |= SAFE_INT if safe_ints else st.integers()
    leaves |= st.floats(allow_nan=False, allow_infinity=False)
    return st.recursive(
        leaves,
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
        ),
        max_leaves=12,
    )


def scalar_values(
    code: Any, millis: bool = False
) -> st.SearchStrategy[Any]:  # code: a parsed TypeCode
    kind = code.kind
    if kind == "e":
        return st.uuids().map(lambda r: typed.EntityRecord(code.object_id, r))
    if kind == "o":
        return st.text(min_size=1, max_size=20).map(
            lambda o: typed.FieldOption(code.object_id, code.field_id, o)
        )
    return {
        "b": st.booleans(),
        "d": st.dates(),
        "dt": aware_datetimes(millis),
        "n": st.integers() | st.decimals(allow_nan=False, allow_infinity=False),
        "p": st.from_regex(r"\+[1-9][0-9]{1,14}", fullmatch=True),
        "s": st.text(max_size=30),
        "u": st.uuids(),
    }[kind]


def values_of(text: str, millis: bool = False, safe_ints: bool = False) -> st.SearchStrategy[Any]:
    """Python values of the type code `text` (None included)."""
    code = typed.parse_type(text)
    if code.kind == "a":
        inner = st.none() | scalar_values(code.item, millis)
        return st.none() | st.lists(inner, max_size=5)
    if code.kind == "l":
        return st.none() | st.lists(plain_json(safe_ints), max_size=5)
    if code.kind == "f":
        return st.none() | st.lists(st.text(min_size=1, max_size=12), max_size=5)
    return st.none() | scalar_values(code, millis)


__all__ = ["same_values", "typed", "uuid", "values_of"]

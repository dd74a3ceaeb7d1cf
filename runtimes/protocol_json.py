"""The frames' JSON codec (runtimes/protocol.py): strict compact JSON made of _json's C
parts, and the exact reading of a step worker's frames. Loaded by protocol.py under a
private name. Standard library only."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds at start-up: annotations only
    from typing import Any


def _not_json(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


class _ScanContext:
    """What _json.make_scanner reads from json.JSONDecoder: strict JSON, plain types."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = staticmethod(_no_constant)


def _c_codec() -> tuple[Any, Any]:
    """json.dumps/json.loads made of _json's C parts, as the json module makes them.

    Why: `import json` imports re (and enum, functools, collections): ~7 ms of a
    replica's start-up on a small machine. Falls back to the json module where
    _json is missing or its signature differs (another interpreter)."""
    try:
        import _json

        dump = _json.make_encoder(
            _markers, _not_json, _json.encode_basestring, None, ":", ",", False, False, False
        )
        scan = _json.make_scanner(_ScanContext())
        dump({"t": [1.5, None, True, "\u00e9"]}, 0)
        scan('{"t":[1]}', 0)
    except Exception:
        return None, None
    return dump, scan


# The encoder's cycle markers: C leaves entries behind when it raises half-way, and a
# stale entry would make a later value look circular, so they are cleared after errors.
_markers: dict[int, Any] = {}
_dump, _scan = _c_codec()
_WHITESPACE = " \t\n\r"


def dumps(value: Any) -> str:
    """Compact strict JSON (json.dumps with separators (",", ":"), ensure_ascii and
    allow_nan False). Raises TypeError (not JSON), ValueError (NaN, a cycle)."""
    if _dump is None:
        import json

        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    try:
        return "".join(_dump(value, 0))
    except BaseException:
        _markers.clear()
        raise


def loads(text: str) -> Any:
    """Strict JSON (no NaN/Infinity). Raises ValueError."""
    if _scan is None:
        return _json_loads(text)
    text = text.strip(_WHITESPACE)
    try:
        value, end = _scan(text, 0)
    except Exception:  # the json module says what is wrong (3.11's scanner may not)
        value, end = _json_loads(text), len(text)
    if end != len(text):
        raise ValueError(f"extra data at character {end}")
    return value


def _json_loads(text: str, exact: bool = False) -> Any:
    import json

    if exact:
        from decimal import Decimal

        return json.loads(text, parse_float=Decimal, parse_constant=_no_constant)
    return json.loads(text, parse_constant=_no_constant)


def loads_exact(text: str) -> Any:
    """Strict JSON whose non-integer numbers are decimal.Decimal, never a float:
    how a step worker reads its frames (typed numbers keep every digit).
    The first use imports decimal (~15 ms): a step's supervisor does it before
    forking its workers. Raises ValueError."""
    scan = _exact_scanner()
    text = text.strip(_WHITESPACE)
    try:
        value, end = scan(text, 0)
    except Exception:  # the json module says what is wrong
        value, end = _json_loads(text, exact=True), len(text)
    if end != len(text):
        raise ValueError(f"extra data at character {end}")
    return value


def _exact_scanner() -> Any:
    global _exact_scan
    if _exact_scan is None:
        from decimal import Decimal

        try:
            import _json

            context = type("_ExactContext", (_ScanContext,), {"parse_float": Decimal})
            _exact_scan = _json.make_scanner(context())
        except Exception:  # no _json here: the json module, slower but the same
            _exact_scan = lambda text, _: (_json_loads(text, exact=True), len(text))  # noqa: E731
    return _exact_scan


_exact_scan: Any = None

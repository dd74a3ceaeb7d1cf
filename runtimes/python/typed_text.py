"""The texts of typed values (runtimes/python/typed.py): each scalar's text checked
(date, date-time, phone, UUID, field option, file id), and exact JSON written back.
Loaded by typed.py under a private name. Standard library only."""

from __future__ import annotations

import datetime
import decimal

TYPE_CHECKING = False
if TYPE_CHECKING:
    import uuid
    from typing import Any


def date(text: str) -> datetime.date:
    ok = len(text) == 10 and text[4] == text[7] == "-"
    if not (ok and (text[:4] + text[5:7] + text[8:]).isdigit()):
        raise ValueError("a date is written YYYY-MM-DD")
    return datetime.date.fromisoformat(text)


def date_time(text: str) -> datetime.datetime:
    if len(text) < 16 or text[10] not in "Tt ":
        raise ValueError("a date-time is written YYYY-MM-DDTHH:MM:SS with Z or an offset")
    date(text[:10])
    iso = text[:-1] + "+00:00" if text[-1] in "Zz" else text
    try:
        value = datetime.datetime.fromisoformat(iso)
    except ValueError:
        raise ValueError("not an ISO 8601 date-time") from None
    if value.tzinfo is None:
        raise ValueError("the date-time has no time zone (add Z or an offset such as +02:00)")
    return value


def phone(text: str) -> str:
    digits = text[1:]
    if not (text.startswith("+") and digits.isdigit() and digits.isascii()):
        raise ValueError("an E.164 phone number is + then digits only, e.g. +14155550100")
    if not 2 <= len(digits) <= 15 or digits[0] == "0":
        raise ValueError("an E.164 number has 2 to 15 digits, the first not 0")
    return text


def strict_uuid(text: str) -> uuid.UUID:
    hyphens = [i for i, c in enumerate(text) if c == "-"]
    if len(text) != 36 or hyphens != [8, 13, 18, 23]:
        raise ValueError("a UUID is written as 8-4-4-4-12 hex digits")
    return uuid_class()(text)  # type: ignore[no-any-return]


def uuid_class() -> type:
    """uuid.UUID, imported on first use: `import uuid` costs ~25 ms (platform, enum,
    re), which a step that declares no UUID should not pay at every replica start."""
    import uuid

    return uuid.UUID


def option(text: str) -> str:
    if not text:
        raise ValueError("a field option is a non-empty string")
    return text


def file_id(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"a file id is a non-empty string, not {show(value)}")
    return value


def dumps(value: Any, dump_str: Any) -> str:
    """Compact JSON of encoded values where a Decimal is written as its own
    digits (the json module would refuse it). dump_str: a fast json encoder
    for the strings and the plain leaves, tried first on the whole value: it
    refuses a Decimal, and only then is the value written piece by piece."""
    try:
        return dump_str(value)  # type: ignore[no-any-return]
    except TypeError:
        return _dumps_exact(value, dump_str)


def _dumps_exact(value: Any, dump_str: Any) -> str:
    if isinstance(value, decimal.Decimal):
        return str(value) if value.is_finite() else _refuse(value)
    if isinstance(value, list):
        return "[" + ",".join(_dumps_exact(x, dump_str) for x in value) + "]"
    if isinstance(value, dict):
        pairs = (dump_str(str(k)) + ":" + _dumps_exact(v, dump_str) for k, v in value.items())
        return "{" + ",".join(pairs) + "}"
    return dump_str(value)  # type: ignore[no-any-return]


def _refuse(value: Any) -> str:
    raise ValueError(f"{value} is not a JSON number")


def show(value: Any, limit: int = 120) -> str:
    """A short readable rendering of a received value for error messages."""
    try:
        text = repr(value) if not isinstance(value, (dict, list, str)) else _json_like(value)
    except Exception:
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _json_like(value: Any) -> str:
    import json

    return _dumps_exact(
        value, lambda v: json.dumps(v, default=repr, ensure_ascii=False, separators=_COMPACT)
    )


_COMPACT = (",", ":")

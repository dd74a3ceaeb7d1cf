"""Typed values of code steps: the wire encoding (seed 004) and its Python types.

A typed value is a JSON object with one key, its type code, e.g. {"s": "Ada"},
or null. The codes, the JSON each holds and what a step sees in Python:

  b            boolean                 true/false           bool
  d            date                    "2026-12-04"         datetime.date
  dt           date-time, with offset  "2026-12-04T17:00:00Z" an aware datetime
  n            number                  a JSON number        int or decimal.Decimal
  p            phone number (E.164)    "+14155550100"       str
  s            string                  "Ada"                str
  u            UUID                    "8-4-4-4-12 hex"     uuid.UUID
  e<obj>       entity record of the custom object <obj>: its record UUID
                                                            EntityRecord
  o<obj,field> field option of that object's field: the option (a string)
                                                            FieldOption
  a[T]         typed array of T (a scalar or e/o code above): a JSON array of
               what T holds, elements may be null           list
  l            untyped list of plain JSON                   list
  a["f"]       files: a JSON array of file ids (strings)    list of str

A value may be null (`null` or {"<code>": null}); arrays may be empty. Numbers
never pass through a binary float on the way in: frames of step workers are
parsed with decimal.Decimal for non-integers, and `dumps` writes a Decimal
back as the same digits. Standard library only.
"""

from __future__ import annotations

import datetime
import decimal
import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    import uuid
    from typing import Any

SCALARS = {
    "b": "boolean",
    "d": "date",
    "dt": "date-time",
    "n": "number",
    "p": "phone number",
    "s": "string",
    "u": "UUID",
}
FILES = 'a["f"]'


def _sibling(file: str, name: str) -> Any:
    """Load one of our own files under a private name, as harness.py loads this one."""
    import sys

    if name in sys.modules:
        return sys.modules[name]
    external = sys.modules["_frozen_importlib_external"]
    spec = external.spec_from_file_location(name, os.path.join(os.path.dirname(__file__), file))
    module = sys.modules["_frozen_importlib"].module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


_text = _sibling("typed_text.py", "_scriptd_typed_text")
_date, _datetime, _phone = _text.date, _text.date_time, _text.phone
_strict_uuid, _uuid_class, _option, _file_id = (
    _text.strict_uuid,
    _text.uuid_class,
    _text.option,
    _text.file_id,
)
dumps, show = _text.dumps, _text.show  # step.py writes outputs with dumps
_objects = _sibling("typed_objects.py", "_scriptd_typed_objects")
EntityRecord, FieldOption = _objects.EntityRecord, _objects.FieldOption


class TypedValueError(ValueError):
    """A value that does not fit its declared type; names the field."""

    def __init__(self, direction: str, field: str, code: TypeCode | str, received: str) -> None:
        expected = code.describe() if isinstance(code, TypeCode) else code
        super().__init__(f'{direction} "{field}": expected {expected}, received {received}')
        self.field = field


class TypeCode:
    """A parsed type code. kind: one of SCALARS, "e", "o", "a", "l", "f"."""

    __slots__ = ("field_id", "item", "kind", "object_id", "text")

    def __init__(
        self,
        kind: str,
        text: str,
        item: TypeCode | None = None,
        object_id: uuid.UUID | None = None,
        field_id: uuid.UUID | None = None,
    ) -> None:
        self.kind, self.text, self.item = kind, text, item
        self.object_id, self.field_id = object_id, field_id

    def describe(self) -> str:
        if self.kind in SCALARS:
            return f"{self.text} ({SCALARS[self.kind]})"
        names = {"e": "entity record", "o": "field option", "l": "untyped list", "f": "files"}
        if self.kind == "a":
            assert self.item is not None
            return f"{self.text} (array of {self.item.describe()})"
        return f"{self.text} ({names[self.kind]})"

    def __repr__(self) -> str:
        return f"TypeCode({self.text!r})"


def parse_type(text: Any) -> TypeCode:
    """A type code from its text; ValueError saying what is allowed. `a[f]` is
    accepted for `a["f"]`; UUIDs are written back in lower case."""
    if not isinstance(text, str):
        raise ValueError(f"a type code is a string, not {_kind(text)}")
    if text in SCALARS or text == "l":
        return TypeCode(text, text)
    if text in (FILES, "a[f]"):
        return TypeCode("f", FILES)
    if text.startswith("e<") and text.endswith(">"):
        object_id = _uuid_in_code(text[2:-1], text)
        return TypeCode("e", f"e<{object_id}>", object_id=object_id)
    if text.startswith("o<") and text.endswith(">") and text.count(",") == 1:
        first, second = text[2:-1].split(",")
        object_id, field_id = _uuid_in_code(first, text), _uuid_in_code(second, text)
        return TypeCode("o", f"o<{object_id},{field_id}>", object_id=object_id, field_id=field_id)
    if text.startswith("a[") and text.endswith("]"):
        item = parse_type(text[2:-1])
        if item.kind in ("a", "l", "f"):
            raise ValueError(
                f"{text}: an array holds b, d, dt, n, p, s, u, e<uuid> or o<uuid,uuid>"
            )
        return TypeCode("a", f"a[{item.text}]", item=item)
    raise ValueError(
        f"unknown type code {text!r} (known: b, d, dt, n, p, s, u, e<uuid>, "
        f"o<uuid,uuid>, a[T], l, {FILES})"
    )


def _uuid_in_code(text: str, code: str) -> uuid.UUID:
    try:
        return _strict_uuid(text.strip())
    except ValueError:
        raise ValueError(f"{code}: {text!r} is not a UUID") from None


# --- decoding: wire JSON -> Python ----------------------------------------------


def decode(code: TypeCode, wire: Any, field: str) -> Any:
    """The Python value of a typed value received for `field`; TypedValueError."""
    if wire is None:
        return None
    if not isinstance(wire, dict) or len(wire) != 1:
        raise TypedValueError("input", field, code, f"{show(wire)} (not a typed value)")
    (key, raw), = wire.items()  # fmt: skip
    if _normal_code(key) != code.text:
        raise TypedValueError("input", field, code, f"a value of type {key}: {show(wire)}")
    if raw is None:
        return None
    try:
        return _decode_raw(code, raw)
    except ValueError as exc:
        raise TypedValueError("input", field, code, f"{show(raw)} ({exc})") from None


def _normal_code(key: str) -> str:
    try:
        return parse_type(key).text
    except ValueError:
        return key


def _decode_raw(code: TypeCode, raw: Any) -> Any:
    kind = code.kind
    if kind == "a":
        assert code.item is not None
        items = _expect(raw, list, "an array")
        return _each(items, lambda x: None if x is None else _decode_raw(code.item, x))
    if kind == "l":
        return [_plain(x) for x in _expect(raw, list, "an array")]
    if kind == "f":
        return _each(_expect(raw, list, "an array"), _file_id)
    if kind == "b":
        return _expect(raw, bool, "true or false")
    if kind == "n":
        return _number(raw)
    text = _expect(raw, str, "a string")
    if kind == "e":
        return EntityRecord(code.object_id, _strict_uuid(text))  # type: ignore[arg-type]
    if kind == "o":
        return FieldOption(code.object_id, code.field_id, _option(text))  # type: ignore[arg-type]
    return _TEXT_DECODERS[kind](text)


def _each(items: Any, convert: Any) -> list[Any]:
    """convert applied to every item; an error says which item."""
    out = []
    for index, item in enumerate(items):
        try:
            out.append(convert(item))
        except ValueError as exc:
            raise ValueError(f"item {index}: {exc}") from None
    return out


def _expect(raw: Any, kind: type, what: str) -> Any:
    if not isinstance(raw, kind) or (kind is not bool and isinstance(raw, bool)):
        raise ValueError(f"the value must be {what}")
    return raw


def _number(raw: Any) -> int | decimal.Decimal:
    if isinstance(raw, bool) or not isinstance(raw, (int, float, decimal.Decimal)):
        raise ValueError("the value must be a JSON number")
    if isinstance(raw, float):  # a frame parsed without Decimal: its shortest digits
        raw = decimal.Decimal(repr(raw))
    if isinstance(raw, decimal.Decimal) and not raw.is_finite():
        raise ValueError("the number must be finite")
    return raw


def _plain(value: Any) -> Any:
    """Plain JSON as the json module gives it: a non-integer number is a float."""
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, list):
        return [_plain(x) for x in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


_TEXT_DECODERS = {"d": _date, "dt": _datetime, "p": _phone, "s": lambda t: t, "u": _strict_uuid}


# --- encoding: Python -> wire JSON ----------------------------------------------


def encode(code: TypeCode, value: Any, field: str) -> dict[str, Any]:
    """The typed value of `value` for an output `field`; TypedValueError."""
    if value is None:
        return {code.text: None}
    try:
        return {code.text: _encode_raw(code, value)}
    except ValueError as exc:
        received = f"{type(value).__name__} {show(value)}"
        raise TypedValueError("output", field, code, f"{received} ({exc})") from None


def _encode_raw(code: TypeCode, value: Any) -> Any:
    kind = code.kind
    if kind in ("a", "l", "f"):
        if not isinstance(value, (list, tuple)):
            raise ValueError("the value must be a list")
        if kind == "l":
            return _each(value, _check_plain)
        if kind == "f":
            return _each(value, _file_id)
        assert code.item is not None
        return _each(value, lambda x: None if x is None else _encode_raw(code.item, x))
    return _SCALAR_ENCODERS[kind](code, value)


def _encode_bool(code: TypeCode, value: Any) -> bool:
    return _expect(value, bool, "a bool")  # type: ignore[no-any-return]


def _encode_number(code: TypeCode, value: Any) -> int | decimal.Decimal:
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("the number must be finite")
        return decimal.Decimal(repr(value))
    return _number(value)


def _encode_date(code: TypeCode, value: Any) -> str:
    if isinstance(value, str):
        value = _date(value)
    if isinstance(value, datetime.datetime) or not isinstance(value, datetime.date):
        raise ValueError("the value must be a datetime.date (or a YYYY-MM-DD string)")
    return value.isoformat()


def _encode_datetime(code: TypeCode, value: Any) -> str:
    if isinstance(value, str):
        value = _datetime(value)
    if not isinstance(value, datetime.datetime):
        raise ValueError("the value must be an aware datetime.datetime")
    if value.utcoffset() is None:
        raise ValueError("the date-time has no time zone (use tzinfo=datetime.timezone.utc)")
    text = value.isoformat()
    return text[:-6] + "Z" if value.utcoffset() == datetime.timedelta(0) else text


def _encode_text(code: TypeCode, value: Any) -> str:
    text = _expect(value, str, "a str")
    return _phone(text) if code.kind == "p" else text  # type: ignore[no-any-return]


def _encode_uuid(code: TypeCode, value: Any) -> str:
    if isinstance(value, str):
        value = _strict_uuid(value)
    if not isinstance(value, _uuid_class()):
        raise ValueError("the value must be a uuid.UUID (or its string)")
    return str(value)


def _encode_record(code: TypeCode, value: Any) -> str:
    if isinstance(value, EntityRecord):
        if value.object_id != code.object_id:
            raise ValueError(f"the record belongs to object {value.object_id}")
        value = value.record_id
    return _encode_uuid(code, value)


def _encode_option(code: TypeCode, value: Any) -> str:
    if isinstance(value, FieldOption):
        if (value.object_id, value.field_id) != (code.object_id, code.field_id):
            raise ValueError(f"the option belongs to o<{value.object_id},{value.field_id}>")
        value = value.option
    return _option(_expect(value, str, "a FieldOption or a str"))


_SCALAR_ENCODERS = {
    "b": _encode_bool,
    "n": _encode_number,
    "d": _encode_date,
    "dt": _encode_datetime,
    "p": _encode_text,
    "s": _encode_text,
    "u": _encode_uuid,
    "e": _encode_record,
    "o": _encode_option,
}


def _check_plain(value: Any, depth: int = 0) -> Any:
    """Plain JSON only (what `l` holds): the error says what is not."""
    if depth > 100:
        raise ValueError("the list is nested too deep")
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, (float, decimal.Decimal)):
        return _encode_number(_L, value)
    if isinstance(value, (list, tuple)):
        return [_check_plain(x, depth + 1) for x in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _check_plain(v, depth + 1) for k, v in value.items()}
    raise ValueError(f"a {type(value).__name__} is not plain JSON")


_L = TypeCode("l", "l")


def _kind(value: Any) -> str:
    return type(value).__name__

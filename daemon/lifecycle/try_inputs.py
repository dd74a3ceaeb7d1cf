"""Typed inputs for trying a script by hand: the fields a form shows for a function's
parameters or a code step's declared inputs, and the request body made from what a
person typed in them (the web console's Test tab).

A function's fields come from the JSON Schema of its body (daemon/archive/signatures.py;
a parameter without annotation has its default's type): a string is sent as typed,
an integer or a number as a JSON number with its own digits, a boolean as true or
false, anything else as JSON text. An empty field is left out (the function's
default applies); an empty required field is refused.
A step's fields come from its type codes (step.toml): `{"inputs": {name: {code:
value}}}`, where "b" is true or false, "n" a number, an array code ("a[T]", "l",
'a["f"]') JSON text, every other code a string; an empty field is null.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from daemon.core.errors import BadRequest

__all__ = [
    "FIELD_PREFIX", "Field", "function_body", "function_fields", "json_body", "step_body",
    "step_fields",
]  # fmt: skip

FIELD_PREFIX = "in-"  # a form's field of input NAME is named "in-NAME"
Kind = Literal["text", "integer", "number", "boolean", "json"]
_INTEGER = re.compile(r"-?(?:0|[1-9][0-9]*)")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
# A parameter without annotation is read like its default: name="world" takes text.
_DEFAULT_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean"}
_SCHEMA_KINDS: dict[str, Kind] = {
    "string": "text", "integer": "integer", "number": "number", "boolean": "boolean",
}  # fmt: skip


@dataclass(frozen=True)
class Field:
    """One input of a form: its name, how its text is read, and what people see."""

    name: str
    kind: Kind
    type_label: str  # "string", "integer", "any JSON", or a step's type code
    required: bool = False
    hint: str = ""  # the default, or how to write the value
    code: str | None = None  # a step input's type code

    @property
    def form_name(self) -> str:
        return FIELD_PREFIX + self.name


def function_fields(schema: Mapping[str, Any]) -> list[Field]:
    """The fields of a function's parameters (its body's JSON Schema)."""
    required = set(schema.get("required", ()))
    fields = []
    for name, prop in dict(schema.get("properties", {})).items():
        declared = prop.get("type", _DEFAULT_TYPES.get(type(prop.get("default"))))
        kind = _SCHEMA_KINDS.get(str(declared), "json")
        label = str(declared) if kind != "json" else _json_label(prop)
        hint = f"default: {json.dumps(prop['default'])}" if "default" in prop else ""
        if kind == "json" and not hint:
            hint = 'JSON, e.g. "text", 3, [1, 2] or {"a": 1}'
        fields.append(Field(name, kind, label, name in required, hint))
    return fields


def _json_label(prop: Mapping[str, Any]) -> str:
    kind = prop.get("type")
    return f"{kind} (JSON)" if isinstance(kind, str) else "any JSON"


def step_fields(inputs: Mapping[str, str]) -> list[Field]:
    """The fields of a code step's declared inputs (name -> type code)."""
    fields = []
    for name, code in inputs.items():
        kind = _code_kind(code)
        hint = {"json": "a JSON array", "boolean": "", "number": "a number"}.get(kind, "text")
        fields.append(Field(name, kind, code, False, f"{hint}; empty: null".lstrip("; "), code))
    return fields


def _code_kind(code: str) -> Kind:
    if code == "b":
        return "boolean"
    if code == "n":
        return "number"
    if code == "l" or code.startswith("a["):
        return "json"
    return "text"


def function_body(fields: list[Field], form: Mapping[str, str]) -> bytes:
    """A function's JSON object body from the form; BadRequest naming the field."""
    parts = []
    for field in fields:
        text = form.get(field.form_name, "")
        if _empty(field, text):
            if field.required:
                raise BadRequest(f"{field.name} is required: the function has no default")
            continue
        parts.append(f"{json.dumps(field.name)}: {_fragment(field, text)}")
    return ("{" + ", ".join(parts) + "}").encode()


def step_body(fields: list[Field], form: Mapping[str, str]) -> bytes:
    """A step's {"inputs": {name: {code: value}}} body from the form."""
    parts = []
    for field in fields:
        text = form.get(field.form_name, "")
        value = "null" if _empty(field, text) else _fragment(field, text)
        parts.append(f"{json.dumps(field.name)}: {{{json.dumps(field.code)}: {value}}}")
    return ('{"inputs": {' + ", ".join(parts) + "}}").encode()


def _empty(field: Field, text: str) -> bool:
    """Nothing typed (spaces count as a string's value, not as a number's)."""
    return text == "" or (field.kind != "text" and text.strip() == "")


def _fragment(field: Field, text: str) -> str:
    """The JSON text of one value; numbers keep the digits typed."""
    if field.kind == "text":
        return json.dumps(text)
    stripped = text.strip()
    if field.kind in ("integer", "number"):
        pattern = _INTEGER if field.kind == "integer" else _NUMBER
        if not pattern.fullmatch(stripped):
            raise BadRequest(f"{field.name} = {text!r} is not {_an(field.kind)}", field=field.name)
        return stripped
    if field.kind == "boolean":
        if stripped not in ("true", "false"):
            raise BadRequest(f"{field.name} = {text!r} is not true or false", field=field.name)
        return stripped
    try:
        value = json.loads(stripped)
    except ValueError as exc:
        raise BadRequest(f"{field.name} is not valid JSON: {exc}", field=field.name) from None
    if field.code is not None and not isinstance(value, list):
        raise BadRequest(f"{field.name} must be a JSON array ({field.code})", field=field.name)
    return stripped


def _an(kind: str) -> str:
    return "an integer" if kind == "integer" else "a number"


def json_body(text: str) -> bytes:
    """A body typed as JSON: it must be a JSON object (BadRequest says why not)."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}", field="body") from None
    if not isinstance(value, dict):
        raise BadRequest("the body must be a JSON object: {...}", field="body")
    return text.encode()

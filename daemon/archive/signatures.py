"""The parameters of a project's functions as JSON Schema, read from main.py's source
(`ast`, never run): the body a call takes, for the per-script OpenAPI document.

A Python function's keyword arguments are the properties of its body: a parameter
without a default is required, a default that is a literal is the property's
`default`, and its annotation gives the type where it is one JSON has (str, int,
float, bool, None, list/List[T], dict/Dict[str, T], Optional[T], T | None, Union,
Literal, Any); any other annotation allows any value. `**kwargs` allows other
properties. A JavaScript function takes one argument, any JSON object.
"""

from __future__ import annotations

import ast
from typing import Any

__all__ = ["any_object", "python_parameters"]

S = dict[str, Any]
_NAMES: dict[str, S] = {
    "str": {"type": "string"},
    "int": {"type": "integer"},
    "float": {"type": "number"},
    "bool": {"type": "boolean"},
    "None": {"type": "null"},
    "list": {"type": "array"},
    "List": {"type": "array"},
    "tuple": {"type": "array"},
    "dict": {"type": "object"},
    "Dict": {"type": "object"},
}


def any_object() -> S:
    return {"type": "object", "description": "the function's argument"}


def python_parameters(source: str, functions: tuple[str, ...]) -> dict[str, S]:
    """function name -> the JSON Schema of its body, for the names in `functions`
    defined at the top level of `source`. Raises SyntaxError."""
    out: dict[str, S] = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name in functions:
            out[node.name] = _body(node.args)
    return out


def _body(args: ast.arguments) -> S:
    named = [*args.posonlyargs, *args.args]
    defaults: list[ast.expr | None] = [None] * (len(named) - len(args.defaults))
    defaults += args.defaults
    pairs = [*zip(named, defaults, strict=True), *zip(args.kwonlyargs, args.kw_defaults,
                                                      strict=True)]  # fmt: skip
    properties: dict[str, S] = {}
    required: list[str] = []
    for arg, default in pairs:
        schema = _annotation(arg.annotation)
        if default is None:
            required.append(arg.arg)
        else:
            literal = _literal(default)
            if literal is not _NO_LITERAL:
                schema = {**schema, "default": literal}
        properties[arg.arg] = schema
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": args.kwarg is not None,
    }


_NO_LITERAL = object()


def _literal(node: ast.expr) -> Any:
    try:
        value = ast.literal_eval(node)
    except (ValueError, SyntaxError, TypeError, RecursionError):
        return _NO_LITERAL
    return value if isinstance(value, str | int | float | bool | type(None)) else _NO_LITERAL


def _annotation(node: ast.expr | None) -> S:
    """The JSON Schema of an annotation; {} (any value) for what JSON has no type for."""
    if node is None:
        return {}
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        try:  # a string annotation: from __future__ import annotations, or quoted
            return _annotation(ast.parse(node.value, mode="eval").body)
        except SyntaxError:
            return {}
    if isinstance(node, ast.Constant) and node.value is None:
        return {"type": "null"}
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _union([node.left, node.right])
    if isinstance(node, ast.Subscript):
        return _generic(_name(node.value), node.slice)
    return dict(_NAMES.get(_name(node), {}))


def _generic(name: str, inner: ast.expr) -> S:
    items = list(inner.elts) if isinstance(inner, ast.Tuple) else [inner]
    if name in ("list", "List", "Sequence") and len(items) == 1:
        return {"type": "array", "items": _annotation(items[0])}
    if name in ("dict", "Dict", "Mapping") and len(items) == 2:
        return {"type": "object", "additionalProperties": _annotation(items[1])}
    if name == "Optional" and len(items) == 1:
        return _union([items[0], ast.Constant(None)])
    if name == "Union":
        return _union(items)
    if name == "Literal":
        values = [_literal(item) for item in items]
        if all(v is not _NO_LITERAL for v in values):
            return {"enum": values}
    return dict(_NAMES.get(name, {}))


def _union(members: list[ast.expr]) -> S:
    flat: list[ast.expr] = []
    for member in members:
        if isinstance(member, ast.BinOp) and isinstance(member.op, ast.BitOr):
            flat += [member.left, member.right]
        else:
            flat.append(member)
    schemas = [_annotation(m) for m in flat]
    if any(not s for s in schemas):
        return {}  # one member takes any value: so does the union
    return {"anyOf": schemas}


def _name(node: ast.expr) -> str:
    """`str`, `typing.List` -> List, anything else -> ''."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""

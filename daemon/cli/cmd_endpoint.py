"""`scriptctl endpoint NAME [--format curl|javascript|python]`: code that calls
each function of a Deployed script, ready to paste with only the key to fill in.

Each snippet comes under a heading written as a comment of its language, so
one function in one format can be piped straight into sh, node or python."""

from __future__ import annotations

import argparse
import json
from typing import Any

from daemon.cli.client import path_of
from daemon.cli.context import Context

FORMATS = ("curl", "javascript", "python")


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    p = commands.add_parser(
        "endpoint", parents=[common], help="code snippets that call a Deployed script"
    )
    p.add_argument("name", metavar="NAME")
    p.add_argument("--format", choices=FORMATS, help="only this format (default: all three)")
    p.set_defaults(handler=endpoint)


def endpoint(ctx: Context, args: argparse.Namespace) -> int:
    query = {"format": args.format} if args.format else None
    data = ctx.client.get(path_of("v1", "scripts", args.name, "endpoint"), query)
    ctx.show(data, render)
    if not ctx.json and data.get("functions"):
        placeholder = data.get("key_placeholder", "YOUR_API_KEY")
        ctx.note(f"Replace {placeholder} with a key (scriptctl keys create {args.name}).")
    return 0


def render(data: dict[str, Any]) -> str:
    if not data.get("functions"):
        return f"{data.get('script')} exposes no functions."
    text = str(data.get("text", "")).rstrip("\n")
    # Python functions have their parameters read (properties, maybe none); a
    # JavaScript function takes any object: nothing to show.
    signatures = [_signature(data.get("script"), f) for f in data["functions"]
                  if "properties" in f.get("parameters", {})]  # fmt: skip
    if not signatures:
        return text
    # Written as comments of the snippets' language: the output still runs when piped.
    comment = "//" if data.get("formats") == ["javascript"] else "#"
    head = [f"{comment} parameters:"] + [f"{comment}   {line}" for line in signatures]
    return "\n".join(head) + "\n" + text


def _signature(script: object, function: dict[str, Any]) -> str:
    """demo.add(a: integer, b: number = 1.5)"""
    schema = function["parameters"]
    required = set(schema.get("required", ()))
    params = []
    for name, prop in schema.get("properties", {}).items():
        text = f"{name}: {_type(prop)}"
        if name not in required and "default" in prop:
            text += f" = {json.dumps(prop['default'])}"
        elif name not in required:
            text += " (optional)"
        params.append(text)
    if schema.get("additionalProperties"):
        params.append("**kwargs")
    return f"{script}.{function['function']}({', '.join(params)})"


def _type(schema: dict[str, Any]) -> str:
    if "enum" in schema:
        return " | ".join(json.dumps(v) for v in schema["enum"])
    if "anyOf" in schema:
        return " | ".join(_type(s) for s in schema["anyOf"])
    kind = schema.get("type")
    if kind == "array" and schema.get("items"):
        return f"array of {_type(schema['items'])}"
    return str(kind) if kind else "any"

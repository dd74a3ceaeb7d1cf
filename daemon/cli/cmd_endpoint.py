"""`scriptctl endpoint NAME [--format curl|javascript|python]`: code that calls
each function of a Deployed script, ready to paste with only the key to fill in.

Each snippet comes under a heading written as a comment of its language, so
one function in one format can be piped straight into sh, node or python."""

from __future__ import annotations

import argparse
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
    return str(data.get("text", "")).rstrip("\n")

"""`scriptctl run NAME --input name=CODE:VALUE ...` (a code step) and
`scriptctl call NAME FUNCTION '{...}'` (a function; --json prints the answer as JSON):
try a Deployed script through the admin API, without a key. Both print what came
back and the execution id; a step's logs and captured output too. Numbers keep
every digit both ways: what is sent and what is shown (the answer is parsed with
Decimals, and printed as it came).

--input values: for b `true`/`false`, for n a JSON number (its digits are kept),
for arrays (a[T], l, a["f"]) a JSON array, for every other code the text itself
(`--input name=s:Ada`, `--input when=dt:2026-12-04T17:00:00Z`). --inputs-json FILE
takes the whole inputs object instead (`-` for stdin)."""

from __future__ import annotations

import argparse
import json
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

from daemon.cli.client import path_of
from daemon.cli.context import Context
from daemon.cli.errors import EXIT_ERROR, ApiError, CliError
from daemon.cli.output import exact_json

JSON_CODES = ("a[", "l")


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    p = commands.add_parser("run", parents=[common], help="run a Deployed code step (no key)")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--input", action="append", default=[], metavar="NAME=CODE:VALUE",
                   help="one typed input, e.g. name=s:Ada (repeat for more)")  # fmt: skip
    p.add_argument("--inputs-json", metavar="FILE", help="the inputs object as JSON (- = stdin)")
    p.set_defaults(handler=run)
    c = commands.add_parser("call", parents=[common], help="call a function of a script (no key)")
    c.add_argument("name", metavar="NAME")
    c.add_argument("function", metavar="FUNCTION")
    c.add_argument("payload", nargs="?", default="{}", metavar="OBJECT",
                   help="the JSON object passed to the function (default {})")  # fmt: skip
    c.set_defaults(handler=call)


def run(ctx: Context, args: argparse.Namespace) -> int:
    inputs = _inputs(args)
    text = dumps_exact({"inputs": inputs}).encode()
    try:
        path = path_of("v1", "scripts", args.name, "run")
        data = ctx.client.call("POST", path, json_text=text, exact=True)
    except ApiError as exc:
        if exc.status != 422 or not isinstance(exc.body, dict):
            raise
        ctx.show(exc.body, render_run)
        return EXIT_ERROR
    ctx.show(data, render_run)
    return 0


def call(ctx: Context, args: argparse.Namespace) -> int:
    try:
        payload = json.loads(args.payload, parse_float=Decimal)
    except ValueError as exc:
        raise CliError(f"the payload is not JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise CliError("the payload must be a JSON object (the function's arguments)")
    path = path_of("v1", "scripts", args.name, "functions", args.function)
    text = dumps_exact(payload).encode()
    try:
        data = ctx.client.call("POST", path, json_text=text, exact=True)
    except ApiError as exc:
        if exc.status != 422 or not isinstance(exc.body, dict):
            raise
        ctx.show(exc.body, render_error)
        return EXIT_ERROR
    ctx.show(data, lambda d: exact_json(d.get("result"), indent=2))
    return 0


def _inputs(args: argparse.Namespace) -> dict[str, Any]:
    inputs: dict[str, Any] = {}
    if args.inputs_json:
        inputs = _inputs_file(args.inputs_json)
    for item in args.input:
        name, value = parse_input(item)
        inputs[name] = value
    return inputs


def _inputs_file(where: str) -> dict[str, Any]:
    try:
        text = sys.stdin.read() if where == "-" else Path(where).read_text()
        inputs = json.loads(text, parse_float=Decimal)
    except (OSError, ValueError) as exc:
        raise CliError(f"--inputs-json {where}: {exc}") from None
    if not isinstance(inputs, dict):
        raise CliError(f"--inputs-json {where}: must hold a JSON object of name: typed value")
    return inputs


def parse_input(item: str) -> tuple[str, dict[str, Any]]:
    """NAME=CODE:VALUE -> (name, {code: value}); CliError saying the form."""
    name, eq, rest = item.partition("=")
    code, colon, text = rest.partition(":")
    if not (eq and colon and name and code):
        raise CliError(f"--input {item!r}: write NAME=CODE:VALUE, e.g. name=s:Ada")
    if code == "b":
        if text not in ("true", "false"):
            raise CliError(f"--input {item!r}: a b (boolean) is true or false")
        return name, {code: text == "true"}
    if code == "n" or code.startswith(JSON_CODES):
        try:
            value = json.loads(text, parse_float=Decimal)
        except ValueError:
            what = "a JSON number" if code == "n" else "a JSON array"
            raise CliError(f"--input {item!r}: the value of {code} is {what}") from None
        return name, {code: value}
    return name, {code: text}


def dumps_exact(value: Any) -> str:
    """JSON where a Decimal (numbers read with parse_float=Decimal) keeps its digits."""
    try:
        return exact_json(value)
    except ValueError as exc:
        raise CliError(str(exc)) from None


def render_run(data: dict[str, Any]) -> str:
    lines = []
    if data.get("error"):
        lines += [render_error(data), "", "Partial outputs:"]
    else:
        lines.append("Outputs:")
    outputs = data.get("outputs") or {}
    lines += [f"  {name} = {exact_json(value)}" for name, value in outputs.items()]
    if not outputs:
        lines.append("  (none)")
    logs = data.get("logs") or []
    if logs or data.get("logs_discarded"):
        lines.append("Logs:")
        lines += [f"  {entry.get('ts')}  {entry.get('message')}" for entry in logs]
        if data.get("logs_discarded"):
            lines.append(f"  ({data['logs_discarded']} later messages discarded: 100 KB limit)")
    for stream in ("stdout", "stderr"):
        if data.get(stream):
            lines += [f"{stream}:", *("  " + line for line in data[stream].splitlines())]
    lines.append(f"Execution: {data.get('execution_id')}")
    return "\n".join(lines)


def render_error(data: dict[str, Any]) -> str:
    error = data.get("error") or {}
    text = f"{error.get('type', 'Error')}: {error.get('message', '')}"
    if error.get("traceback"):
        text += "\n" + str(error["traceback"]).rstrip("\n")
    return text

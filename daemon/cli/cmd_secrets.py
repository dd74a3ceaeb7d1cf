"""`scriptctl secrets set|list|delete`: the account's integration secrets.

A value goes in from stdin (asked without echo on a terminal) or a file, and never
comes back: listings show names, dates and the scripts granted each secret. Scripts
are granted secrets with `--secret NAME` on create, update, redeploy and up.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path
from typing import Any

from daemon.cli.client import path_of
from daemon.cli.context import Context
from daemon.cli.errors import CliError
from daemon.cli.output import fmt_time, render_table

__all__ = ["register"]


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    secrets = commands.add_parser(
        "secrets", parents=[common], help="set, list and delete integration secrets"
    )
    actions = secrets.add_subparsers(dest="secrets_action", metavar="ACTION", required=True)

    p = actions.add_parser(
        "set", parents=[common], help="set a secret from stdin or --file (never printed)"
    )
    p.add_argument("name", metavar="NAME", help="the secret: the script's env variable name")
    p.add_argument("--file", metavar="F", type=Path, help="read the value from this file")
    p.set_defaults(handler=set_secret)

    p = actions.add_parser("list", parents=[common], help="names, created, and used by")
    p.set_defaults(handler=list_secrets)

    p = actions.add_parser(
        "delete", parents=[common], help="delete a secret (refused while a Deployed script uses it)"
    )
    p.add_argument("name", metavar="NAME")
    p.set_defaults(handler=delete)


def read_value(file: Path | None) -> str:
    """The value, without one trailing newline (what `echo` or an editor adds)."""
    if file is None and sys.stdin.isatty():
        return getpass.getpass("secret value: ")
    try:
        raw = file.read_bytes() if file is not None else sys.stdin.buffer.read()
        text = raw.decode()
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"cannot read the secret value: {exc}") from None
    text = text.removesuffix("\n").removesuffix("\r")
    if not text:
        raise CliError("the secret value is empty")
    return text


def set_secret(ctx: Context, args: argparse.Namespace) -> int:
    value = read_value(args.file)
    info = ctx.client.call("PUT", path_of("v1", "secrets", args.name), {"value": value})
    ctx.show(info, lambda i: f"Secret {i.get('name')!r} set (the value is never shown)")
    return 0


def secrets_table(data: dict[str, Any]) -> str:
    secrets = data.get("secrets") or []
    if not secrets:
        return "No secrets. Set one with: scriptctl secrets set NAME < value-file"
    rows = [
        (
            s.get("name"),
            fmt_time(s.get("created_at")),
            s.get("created_by"),
            fmt_time(s.get("updated_at")),
            ", ".join(s.get("used_by") or []) or "-",
        )
        for s in secrets
    ]
    return render_table(("NAME", "CREATED (UTC)", "CREATED BY", "SET (UTC)", "USED BY"), rows)


def list_secrets(ctx: Context, args: argparse.Namespace) -> int:
    ctx.show(ctx.client.get(path_of("v1", "secrets")), secrets_table)
    return 0


def delete(ctx: Context, args: argparse.Namespace) -> int:
    result = ctx.client.call("DELETE", path_of("v1", "secrets", args.name))
    ctx.show(result, lambda r: f"Deleted secret {r.get('deleted')!r}")
    return 0

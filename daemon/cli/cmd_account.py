"""The account's credits: `account`, `account set --allocation N [--reset]` and
`account usage [--since ISO|7d|24h]`."""

from __future__ import annotations

import argparse
from typing import Any

from daemon.cli import render_account
from daemon.cli.context import Context


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    p = commands.add_parser(
        "account", parents=[common], help="credits: total allocation, balance and usage"
    )
    p.set_defaults(handler=show)
    sub = p.add_subparsers(dest="account_command", metavar="COMMAND", parser_class=type(p))

    s = sub.add_parser(
        "set", parents=[common], help="set the total allocation (the balance moves with it)"
    )
    s.add_argument(
        "--allocation", required=True, metavar="N", help="credits granted in total, e.g. 250"
    )
    s.add_argument(
        "--reset", action="store_true", help="set the balance to N too (forget what was spent)"
    )
    s.set_defaults(handler=set_allocation)

    u = sub.add_parser("usage", parents=[common], help="credits spent by script and profile")
    u.add_argument(
        "--since", metavar="WHEN", help="ISO time (2026-11-01, 2026-11-01T08:00Z) or age (7d, 24h)"
    )
    u.set_defaults(handler=usage)


def show(ctx: Context, args: argparse.Namespace) -> int:
    ctx.show(ctx.client.get("/v1/account"), render_account.account)
    return 0


def set_allocation(ctx: Context, args: argparse.Namespace) -> int:
    body = {"allocation": args.allocation, "reset": bool(args.reset)}
    ctx.show(ctx.client.call("PUT", "/v1/account", body), render_account.account)
    return 0


def usage(ctx: Context, args: argparse.Namespace) -> int:
    query = {"since": args.since} if args.since else None
    ctx.show(ctx.client.get("/v1/account/usage", query), render_account.usage)
    return 0

"""What happened: `events NAME` (a script's events, scaling decisions with their
inputs) and `notifications` (the email outbox)."""

from __future__ import annotations

import argparse
from typing import Any

from daemon.cli import render_account
from daemon.cli.client import path_of
from daemon.cli.context import Context


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    p = commands.add_parser(
        "events", parents=[common], help="a script's events, scaling decisions included"
    )
    p.add_argument("name", metavar="NAME")
    p.add_argument("--kind", metavar="KIND", help="only this kind, e.g. scaled")
    p.add_argument("--limit", type=int, default=100, metavar="N", help="the newest N (100)")
    p.set_defaults(handler=events)

    p = commands.add_parser(
        "notifications", parents=[common], help="the email outbox: queued, sent, retrying, failed"
    )
    p.add_argument("--status", choices=("queued", "sent", "retrying", "failed"))
    p.add_argument("--script", metavar="NAME", help="only emails about this script")
    p.add_argument("--limit", type=int, default=50, metavar="N", help="the newest N (50)")
    p.set_defaults(handler=notifications)


def events(ctx: Context, args: argparse.Namespace) -> int:
    query = {"limit": str(args.limit)}
    if args.kind:
        query["kind"] = args.kind
    data = ctx.client.get(path_of("v1", "scripts", args.name, "events"), query)
    ctx.show(data, render_account.events)
    return 0


def notifications(ctx: Context, args: argparse.Namespace) -> int:
    query = {"limit": str(args.limit)}
    if args.status:
        query["status"] = args.status
    if args.script:
        query["script"] = args.script
    ctx.show(ctx.client.get("/v1/notifications", query), render_account.notifications)
    return 0

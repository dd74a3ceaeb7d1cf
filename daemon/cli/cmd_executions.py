"""`scriptctl executions NAME [--limit N]` and `scriptctl execution ID`: the
records of calls (status, timings, CPU, memory, error), newest first."""

from __future__ import annotations

import argparse
from typing import Any

from daemon.cli import render_calls
from daemon.cli.client import path_of
from daemon.cli.context import Context

LIMIT_MAX = 1000


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    p = commands.add_parser(
        "executions", parents=[common], help="a script's recent calls, newest first"
    )
    p.add_argument("name", metavar="NAME")
    p.add_argument(
        "--limit", type=limit, default=None, metavar="N", help="at most N records (default 50)"
    )
    p.add_argument(
        "--before", metavar="TIME", help="only calls received before TIME (an ISO time as listed)"
    )
    p.add_argument("--status", choices=("ok", "error", "timeout", "oom", "crashed", "rejected"),
                   help="only calls that ended so")  # fmt: skip
    since = "only calls received since WHEN: 30s, 15m, 1h, 2d or an ISO time"
    p.add_argument("--since", metavar="WHEN", help=since)
    p.set_defaults(handler=executions)

    p = commands.add_parser("execution", parents=[common], help="one call's full record")
    p.add_argument("id", metavar="ID")
    p.set_defaults(handler=execution)


def limit(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= LIMIT_MAX:
        raise argparse.ArgumentTypeError(f"expected a number from 1 to {LIMIT_MAX}, got {text!r}")
    return int(text)


def executions(ctx: Context, args: argparse.Namespace) -> int:
    query = {}
    if args.limit is not None:
        query["limit"] = str(args.limit)
    for option in ("before", "status", "since"):
        if getattr(args, option):
            query[option] = getattr(args, option)
    data = ctx.client.get(path_of("v1", "scripts", args.name, "executions"), query or None)
    ctx.show(data, render_calls.executions_table)
    return 0


def execution(ctx: Context, args: argparse.Namespace) -> int:
    ctx.show(ctx.client.get(path_of("v1", "executions", args.id)), render_calls.execution)
    return 0

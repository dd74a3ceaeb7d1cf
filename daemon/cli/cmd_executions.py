"""`scriptctl executions NAME [--limit N] [--function F]` and `scriptctl execution ID`: the
records of calls (status, timings, CPU, memory, error), newest first.
`--status` with an asynchronous call's status (queued ... canceled) or `dead` lists the
script's asynchronous calls instead; `scriptctl executions retry ID` queues a dead
letter again."""

from __future__ import annotations

import argparse
from typing import Any

from daemon.cli import render_async, render_calls
from daemon.cli.client import path_of
from daemon.cli.context import Context
from daemon.cli.errors import CliError

LIMIT_MAX = 1000
RECORD_STATUSES = ("ok", "error", "timeout", "oom", "crashed", "rejected")
ASYNC_FILTERS = ("queued", "running", "succeeded", "failed", "timed_out", "expired",
                 "canceled", "dead")  # fmt: skip


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    p = commands.add_parser(
        "executions", parents=[common], help="a script's recent calls, newest first"
    )
    p.add_argument("name", metavar="NAME", help="the script (or retry, then the call's ID)")
    p.add_argument("id", metavar="ID", nargs="?", help="with retry: the dead letter to run again")
    p.add_argument(
        "--limit", type=limit, default=None, metavar="N", help="at most N records (default 50)"
    )
    p.add_argument(
        "--before", metavar="TIME", help="only calls received before TIME (an ISO time as listed)"
    )
    what = "only calls that ended so; an async call's status, or dead: async calls"
    p.add_argument("--status", choices=(*RECORD_STATUSES, *ASYNC_FILTERS), help=what)
    since = "only calls received since WHEN: 30s, 15m, 1h, 2d or an ISO time"
    p.add_argument("--since", metavar="WHEN", help=since)
    p.add_argument("--function", metavar="NAME", help="only calls of this function")
    p.set_defaults(handler=executions)

    p = commands.add_parser("execution", parents=[common], help="one call's full record")
    p.add_argument("id", metavar="ID")
    p.set_defaults(handler=execution)


def limit(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= LIMIT_MAX:
        raise argparse.ArgumentTypeError(f"expected a number from 1 to {LIMIT_MAX}, got {text!r}")
    return int(text)


def executions(ctx: Context, args: argparse.Namespace) -> int:
    if args.id is not None:
        if args.name != "retry":
            raise CliError(f"unexpected {args.id!r}: did you mean scriptctl executions retry ID?")
        again = ctx.client.call("POST", path_of("v1", "executions", args.id, "retry"), {})
        ctx.show(again, render_async.call)
        return 0
    if args.status in ASYNC_FILTERS:
        return async_calls(ctx, args)
    query = {}
    if args.limit is not None:
        query["limit"] = str(args.limit)
    for option in ("before", "status", "since", "function"):
        if getattr(args, option):
            query[option] = getattr(args, option)
    data = ctx.client.get(path_of("v1", "scripts", args.name, "executions"), query or None)
    ctx.show(data, render_calls.executions_table)
    return 0


def async_calls(ctx: Context, args: argparse.Namespace) -> int:
    query = {"filter": args.status}
    if args.limit is not None:
        query["limit"] = str(args.limit)
    data = ctx.client.get(path_of("v1", "scripts", args.name, "async-calls"), query)
    ctx.show(data, render_async.calls_table)
    return 0


def execution(ctx: Context, args: argparse.Namespace) -> int:
    data = ctx.client.get(path_of("v1", "executions", args.id))
    ctx.show(data, render_async.call if data.get("async") else render_calls.execution)
    return 0

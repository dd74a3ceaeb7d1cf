"""`scriptctl logs NAME [--replica R] [--tail BYTES] [--follow]`: what a script's
replicas wrote to stdout and stderr, as the host keeps it (rotated, bounded).

Each replica's kept output comes under a `==> replica <==` header, oldest replica
first. --follow then prints new output as it comes (a new header when another replica
writes), until interrupted; with --json every object of the stream is printed as one
JSON line.
"""

from __future__ import annotations

import argparse
import json
from typing import Any
from urllib.parse import urlencode

from daemon.cli.client import path_of
from daemon.cli.context import Context

TAIL_MAX = 16 << 20


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    p = commands.add_parser(
        "logs", parents=[common], help="a script's replica output (stdout and stderr)"
    )
    p.add_argument("name", metavar="NAME")
    p.add_argument("--replica", metavar="R", help="only this replica (a name as listed)")
    p.add_argument(
        "--tail", type=tail_bytes, default=None, metavar="BYTES",
        help="the last BYTES of each replica's output (default 65536)",
    )  # fmt: skip
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new output")
    p.set_defaults(handler=logs)


def tail_bytes(text: str) -> int:
    if not text.isdigit() or int(text) > TAIL_MAX:
        raise argparse.ArgumentTypeError(f"expected a number from 0 to {TAIL_MAX}, got {text!r}")
    return int(text)


def logs(ctx: Context, args: argparse.Namespace) -> int:
    query = {"replica": args.replica, "tail": args.tail, "follow": "true" if args.follow else None}
    params = urlencode({k: v for k, v in query.items() if v is not None})
    path = path_of("v1", "scripts", args.name, "logs") + (f"?{params}" if params else "")
    if not args.follow:
        ctx.show(ctx.client.get(path), render)
        return 0
    last: str | None = None
    for item in ctx.client.lines(path):
        if ctx.json:
            ctx.out.write(json.dumps(item) + "\n")
        elif "skipped" in item:
            ctx.note(f"[{item['skipped']} bytes skipped: this reader fell behind]")
        else:
            last = _chunk(ctx, item, last)
        ctx.out.flush()
    return 0


def _chunk(ctx: Context, item: dict[str, Any], last: str | None) -> str:
    replica = str(item.get("replica", ""))
    if replica != last:
        state = "" if "running" not in item else (" (running)" if item["running"] else "")
        ctx.out.write(f"==> {replica}{state} <==\n")
    ctx.out.write(str(item.get("text", "")))
    return replica


def render(data: dict[str, Any]) -> str:
    replicas = data.get("replicas") or []
    if not replicas:
        return f"No output kept for {data.get('script', 'this script')}."
    parts = []
    for r in replicas:
        state = "running" if r.get("running") else "exited"
        cut = f", last {len(r.get('text', '').encode())} of {r.get('bytes')} bytes" * bool(
            r.get("truncated")
        )
        parts.append(f"==> {r['replica']} ({state}{cut}) <==\n{r.get('text', '')}")
    return "\n".join(p.rstrip("\n") for p in parts)

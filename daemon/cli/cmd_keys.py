"""`scriptctl keys create|list|delete`: a script's API keys; `keys callback-secret`:
the secret that signs its asynchronous calls' callbacks.

The whole key appears once, in the answer to `keys create`; listings show its
name, dates and public id, never the secret."""

from __future__ import annotations

import argparse
from typing import Any

from daemon.cli import render_calls
from daemon.cli.client import path_of
from daemon.cli.context import Context


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    keys = commands.add_parser("keys", parents=[common], help="create, list and delete API keys")
    actions = keys.add_subparsers(dest="keys_action", metavar="ACTION", required=True)

    p = actions.add_parser(
        "create", parents=[common], help="create a key (shown once; works while Deployed)"
    )
    p.add_argument("name", metavar="NAME", help="the script")
    p.add_argument(
        "--key-name", metavar="N", help='a unique name for the key (default "Secret Key")'
    )
    p.set_defaults(handler=create)

    p = actions.add_parser("list", parents=[common], help="a script's keys (never the secrets)")
    p.add_argument("name", metavar="NAME", help="the script")
    p.add_argument("--search", metavar="TEXT", help="only key names containing TEXT")
    p.set_defaults(handler=list_keys)

    p = actions.add_parser("delete", parents=[common], help="delete a key: refused from now on")
    p.add_argument("name", metavar="NAME", help="the script")
    p.add_argument("key_name", metavar="KEYNAME", help="the key's name, as `keys list` shows it")
    p.set_defaults(handler=delete)

    p = actions.add_parser(
        "callback-secret", parents=[common],
        help="the secret that signs the script's async callbacks (--rotate: a new one)",
    )  # fmt: skip
    p.add_argument("name", metavar="NAME", help="the script")
    p.add_argument("--rotate", action="store_true", help="make a new one; the old stops signing")
    p.set_defaults(handler=callback_secret)


def create(ctx: Context, args: argparse.Namespace) -> int:
    body = {} if args.key_name is None else {"name": args.key_name}
    key = ctx.client.call("POST", path_of("v1", "scripts", args.name, "keys"), body)
    ctx.show(key, render_calls.new_key)
    if ctx.json:
        ctx.note(f"scriptctl: {render_calls.NOT_SHOWN_AGAIN}")
    return 0


def list_keys(ctx: Context, args: argparse.Namespace) -> int:
    query = {"search": args.search} if args.search else None
    data = ctx.client.get(path_of("v1", "scripts", args.name, "keys"), query)
    ctx.show(data, render_calls.keys_table)
    return 0


def delete(ctx: Context, args: argparse.Namespace) -> int:
    api = path_of("v1", "scripts", args.name, "keys", args.key_name)
    result = ctx.client.call("DELETE", api)
    ctx.show(result, lambda r: f"Deleted API key {r.get('deleted')!r} of {args.name}")
    return 0


def callback_secret(ctx: Context, args: argparse.Namespace) -> int:
    api = path_of("v1", "scripts", args.name, "callback-secret")
    data = ctx.client.call("POST", api, {}) if args.rotate else ctx.client.get(api)
    ctx.show(data, lambda d: str(d.get("secret")))
    return 0

"""Commands that describe the host: `profiles` and `runtimes`."""

from __future__ import annotations

import argparse
from typing import Any

from daemon.cli import render_scripts
from daemon.cli.context import Context


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    p = commands.add_parser("profiles", parents=[common], help="list the hardware profiles")
    p.set_defaults(handler=profiles)
    p = commands.add_parser(
        "runtimes", parents=[common], help="list the language runtimes found on the host"
    )
    p.set_defaults(handler=runtimes)


def profiles(ctx: Context, args: argparse.Namespace) -> int:
    data = ctx.client.get("/v1/profiles")
    ctx.show(data, lambda d: render_scripts.profiles_table(d.get("profiles") or []))
    return 0


def runtimes(ctx: Context, args: argparse.Namespace) -> int:
    data = ctx.client.get("/v1/runtimes")
    ctx.show(data, lambda d: render_scripts.runtimes_table(d.get("runtimes") or []))
    return 0

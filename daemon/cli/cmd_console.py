"""`scriptctl console`: a one-time sign-in link to the web console.

The link is asked over the admin socket, so the console session acts as the unix user
running scriptctl ("added by", "deployed by"). It works once and for 10 minutes.
"""

from __future__ import annotations

import argparse
from typing import Any

from daemon.cli.client import path_of
from daemon.cli.context import Context

__all__ = ["register"]


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    p = commands.add_parser(
        "console", parents=[common], help="print a one-time sign-in link to the web console"
    )
    p.set_defaults(handler=console_link)


def link_text(data: dict[str, Any]) -> str:
    minutes = int(data.get("expires_in_s", 600)) // 60
    return (
        f"Open this link to sign in to the web console as {data.get('user')}\n"
        f"(it works once, within {minutes} minutes):\n\n    {data.get('url')}"
    )


def console_link(ctx: Context, args: argparse.Namespace) -> int:
    ctx.show(ctx.client.call("POST", path_of("v1", "console", "link")), link_text)
    return 0

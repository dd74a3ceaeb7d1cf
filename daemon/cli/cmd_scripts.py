"""Commands on the registry: `create`, `update`, `list`, `show`, `history`,
`rename-version` and `delete`."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from daemon.cli import options, render_scripts
from daemon.cli.client import path_of
from daemon.cli.context import Context
from daemon.cli.errors import CliError
from daemon.cli.waiting import finish_deploy


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    p = commands.add_parser("create", parents=[common], help="create a script (a Draft)")
    p.add_argument("name", metavar="NAME")
    options.add_script_options(p, identity=True, archive_required=True, language_required=True)
    p.add_argument("--deploy", action="store_true", help="deploy it right away")
    p.add_argument("--wait", action="store_true", help="with --deploy: follow the deploy")
    p.set_defaults(handler=create)

    p = commands.add_parser(
        "update", parents=[common], help="change a script that is not Deployed (use redeploy then)"
    )
    p.add_argument("name", metavar="NAME")
    p.add_argument("--new-name", metavar="NAME", help="rename the script (Draft only)")
    options.add_script_options(p, identity=True)
    options.add_env_edits(p)
    p.set_defaults(handler=update)

    p = commands.add_parser("list", parents=[common], help="the summary table of scripts")
    p.add_argument("--search", metavar="TEXT", help="only names containing TEXT")
    p.set_defaults(handler=list_scripts)

    p = commands.add_parser("show", parents=[common], help="a script's overview")
    p.add_argument("name", metavar="NAME")
    p.set_defaults(handler=show)

    p = commands.add_parser("history", parents=[common], help="a script's deployment history")
    p.add_argument("name", metavar="NAME")
    p.set_defaults(handler=history)

    p = commands.add_parser(
        "rename-version", parents=[common], help="give a deployment version a new display name"
    )
    p.add_argument("name", metavar="NAME")
    p.add_argument("number", metavar="NUMBER", type=version_number, help="3 or v3")
    p.add_argument("new_name", metavar="NEW_NAME")
    p.set_defaults(handler=rename_version)

    p = commands.add_parser(
        "delete", parents=[common], help="delete a script and everything it has (cannot be undone)"
    )
    p.add_argument("name", metavar="NAME")
    p.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    p.set_defaults(handler=delete)


def version_number(text: str) -> int:
    digits = text[1:] if text[:1] in ("v", "V") else text
    if not digits.isdigit() or int(digits) < 1:
        raise argparse.ArgumentTypeError(f"expected a version number like 3 or v3, got {text!r}")
    return int(digits)


def create(ctx: Context, args: argparse.Namespace) -> int:
    if args.wait and not args.deploy:
        raise CliError("--wait goes with --deploy")
    body = options.script_body(args)
    body["name"] = args.name
    options.with_archive(ctx.client, args, body)
    body["deploy"] = bool(args.deploy)
    script = ctx.client.call("POST", "/v1/scripts", body)
    if args.deploy:
        return finish_deploy(ctx, script, args.wait)
    ctx.show(script, lambda s: f"Created {s.get('name')}: {s.get('status')}")
    return 0


def update(ctx: Context, args: argparse.Namespace) -> int:
    body = options.script_body(args, options.current_env(ctx.client, args, args.name))
    options.with_archive(ctx.client, args, body)
    if not body:
        raise CliError("nothing to update: give at least one option (see `scriptctl update -h`)")
    script = ctx.client.call("PATCH", path_of("v1", "scripts", args.name), body)
    ctx.show(script, lambda s: f"Updated {s.get('name')}: {s.get('status')}")
    return 0


def list_scripts(ctx: Context, args: argparse.Namespace) -> int:
    query = {"search": args.search} if args.search else None
    data = ctx.client.get("/v1/scripts", query)
    ctx.show(data, lambda d: render_scripts.scripts_table(d.get("scripts") or []))
    return 0


def show(ctx: Context, args: argparse.Namespace) -> int:
    ctx.show(ctx.client.get(path_of("v1", "scripts", args.name)), render_scripts.overview)
    return 0


def history(ctx: Context, args: argparse.Namespace) -> int:
    ctx.show(ctx.client.get(path_of("v1", "scripts", args.name, "history")), render_scripts.history)
    return 0


def rename_version(ctx: Context, args: argparse.Namespace) -> int:
    api = path_of("v1", "scripts", args.name, "versions", args.number)
    version = ctx.client.call("PATCH", api, {"display_name": args.new_name})
    ctx.show(version, lambda v: f"Renamed {args.name} {render_scripts.version_line(v)}")
    return 0


def delete(ctx: Context, args: argparse.Namespace) -> int:
    if not args.yes:
        confirm_delete(ctx, args.name)
    result = ctx.client.call("DELETE", path_of("v1", "scripts", args.name))
    ctx.show(result, lambda r: f"Deleted {r.get('deleted', args.name)}")
    return 0


def confirm_delete(ctx: Context, name: str) -> None:
    """Ask on a terminal; without one, refuse (a script must not vanish by accident)."""
    if not sys.stdin.isatty():
        raise CliError(f"refusing to delete {name} without confirmation: pass --yes")
    ctx.err.write(
        f"Delete {name} with all its versions, API keys and data? This cannot be undone.\n"
        f"Type the script name to confirm: "
    )
    ctx.err.flush()
    if sys.stdin.readline().strip() != name:
        raise CliError(f"not deleted: {name} was not confirmed")

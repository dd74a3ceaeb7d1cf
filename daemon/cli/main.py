"""scriptctl's entry point: the argument parser, command dispatch and the one place
where every error becomes `scriptctl: error: ...` and an exit code."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from daemon.cli import (
    cmd_account,
    cmd_backup,
    cmd_console,
    cmd_deploy,
    cmd_endpoint,
    cmd_events,
    cmd_executions,
    cmd_files,
    cmd_info,
    cmd_keys,
    cmd_logs,
    cmd_scripts,
    cmd_secrets,
    cmd_try,
    cmd_uploads,
)
from daemon.cli.client import DEFAULT_SOCKET, SOCKET_ENV, AdminClient, resolve_socket
from daemon.cli.context import Context
from daemon.cli.errors import EXIT_INTERRUPTED, EXIT_USAGE, CliError
from daemon.cli.output import emit_json

PROG = "scriptctl"
DESCRIPTION = "Administer scriptd: upload, validate, deploy and manage scripts."


class Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line, like every other scriptctl error."""

    def error(self, message: str) -> NoReturn:
        where = self.prog.removeprefix(PROG).strip()
        prefix = f"{where}: " if where else ""
        sys.stderr.write(f"{PROG}: error: {prefix}{message} (see `{self.prog} --help`)\n")
        sys.exit(EXIT_USAGE)


def global_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """--socket and --json, accepted before or after the command. Below the top
    level they default to SUPPRESS so that they do not hide a value given above."""
    default_socket = None if top else argparse.SUPPRESS
    default_json = False if top else argparse.SUPPRESS
    parser.add_argument(
        "--socket",
        metavar="PATH",
        default=default_socket,
        help=f"admin socket (default: ${SOCKET_ENV} or {DEFAULT_SOCKET})",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        default=default_json,
        help="print the API's JSON instead of tables",
    )


def build_parser() -> Parser:
    parser = Parser(prog=PROG, description=DESCRIPTION)
    global_options(parser, top=True)
    common = Parser(add_help=False)
    global_options(common, top=False)
    commands = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, parser_class=Parser
    )
    for module in (
        cmd_scripts, cmd_deploy, cmd_files, cmd_info, cmd_keys, cmd_endpoint, cmd_executions,
        cmd_uploads, cmd_account, cmd_events, cmd_try, cmd_logs, cmd_secrets, cmd_console,
        cmd_backup,
    ):  # fmt: skip
        module.register(commands, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    ctx = Context(AdminClient(resolve_socket(args.socket)), json=args.json)
    try:
        return int(args.handler(ctx, args) or 0)
    except CliError as exc:
        return report(ctx, exc)
    except KeyboardInterrupt:
        ctx.err.write(f"\n{PROG}: interrupted\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # `scriptctl list | head`: the reader went away, nothing left to say; point
        # stdout at /dev/null so that the flush at exit does not complain either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:
        # A local file problem that no command turned into a sentence of its own.
        return report(ctx, CliError(f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": ")))


def report(ctx: Context, exc: CliError) -> int:
    if ctx.json and exc.body is not None:
        emit_json(exc.body, ctx.out)
    ctx.out.flush()
    ctx.err.write(f"{PROG}: error: {exc.message}\n")
    for line in exc.details:
        ctx.err.write(line + "\n")
    ctx.err.flush()
    return exc.exit_code

"""`scriptctl uploads add|list|delete`: the account's files, which every
replica reads at UPLOADS_DIR. A file is streamed to the daemon, never read
into memory."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from daemon.cli import render_calls
from daemon.cli.client import path_of
from daemon.cli.context import Context
from daemon.cli.errors import CliError
from daemon.cli.output import Progress, fmt_bytes


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    uploads = commands.add_parser(
        "uploads", parents=[common], help="the account's files (UPLOADS_DIR in every replica)"
    )
    actions = uploads.add_subparsers(dest="uploads_action", metavar="ACTION", required=True)

    p = actions.add_parser("add", parents=[common], help="upload a file")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--name", metavar="N", help="the name to store it under (default: FILE's)")
    p.add_argument("--replace", action="store_true", help="overwrite a file of that name")
    p.set_defaults(handler=add)

    p = actions.add_parser("list", parents=[common], help="the uploaded files")
    p.set_defaults(handler=list_files)

    p = actions.add_parser("delete", parents=[common], help="delete an uploaded file")
    p.add_argument("name", metavar="NAME")
    p.set_defaults(handler=delete)


def add(ctx: Context, args: argparse.Namespace) -> int:
    path = Path(args.file).expanduser()
    if not path.is_file():
        what = "not a file" if path.exists() else "no such file"
        raise CliError(f"{args.file}: {what}")
    name = args.name or path.name
    api = "/v1/uploads" + ("?replace=1" if args.replace else "")
    progress = Progress(f"uploading {name}", sys.stderr) if sys.stderr.isatty() else None
    try:
        stored = ctx.client.upload(path, name, progress, api_path=api)
    finally:
        if progress:
            progress.finish()
    ctx.show(stored, lambda f: f"Uploaded {f.get('name')} ({fmt_bytes(f.get('size'))})")
    return 0


def list_files(ctx: Context, args: argparse.Namespace) -> int:
    ctx.show(ctx.client.get("/v1/uploads"), render_calls.files_table)
    return 0


def delete(ctx: Context, args: argparse.Namespace) -> int:
    result = ctx.client.call("DELETE", path_of("v1", "uploads", args.name))
    ctx.show(result, lambda r: f"Deleted {r.get('deleted', args.name)}")
    return 0

"""`scriptctl backup -o FILE [--workspaces] [--include-key]`: an online backup.

The daemon writes the tar.gz (GET /v1/backup) and this command streams it into FILE
(mode 0600: it holds the database, with secret env values and key hashes) through a
temp file renamed into place only when complete. The secrets key is not in it unless
`--include-key`: a restore needs the same key for integration secrets, so either keep
the key file safe apart, or include it and keep the backup as secret as the key."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from daemon.cli.cmd_files import download
from daemon.cli.context import Context
from daemon.cli.output import fmt_bytes

KEY_NOT_INCLUDED = (
    "WARNING: the secrets key is NOT in this backup. A restore needs the same key to\n"
    "decrypt integration secrets: copy it from the daemon's state dir (secrets.key beside\n"
    "scriptd.db, or the systemd credential scriptd-secrets-key) and keep it apart, or\n"
    "take the backup with --include-key."
)
KEY_INCLUDED = (
    "WARNING: this backup holds the secrets key: anyone with the file can read every\n"
    "integration secret. Keep it as secret as the key."
)


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    p = commands.add_parser(
        "backup", parents=[common], help="take an online backup of the daemon (tar.gz)"
    )
    p.add_argument("-o", "--output", metavar="FILE", required=True, help="e.g. backup.tar.gz")
    p.add_argument("--workspaces", action="store_true", help="include every WORKSPACE_DIR")
    p.add_argument(
        "--include-key",
        action="store_true",
        help="include the integration secrets' key (the file then decrypts every secret)",
    )
    p.set_defaults(handler=backup)


def backup(ctx: Context, args: argparse.Namespace) -> int:
    flags = {"workspaces": args.workspaces, "include_key": args.include_key}
    query = "&".join(f"{k}={str(v).lower()}" for k, v in flags.items())
    size = download(ctx.client, f"/v1/backup?{query}", args.output, mode=0o600)
    result = {"path": args.output, "bytes": size, **flags}
    if ctx.json:
        ctx.show(result, str)
    else:
        ctx.say(f"Wrote {args.output} ({fmt_bytes(size)})")
    print(KEY_INCLUDED if args.include_key else KEY_NOT_INCLUDED, file=sys.stderr)
    return 0

"""Commands that move project files: `validate`, `export` and `sample`.

Downloads go to a temporary file beside the target and are renamed into place
only when complete, so an interrupted export never leaves a truncated zip."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from daemon.cli import archives, render_scripts
from daemon.cli.client import AdminClient, path_of
from daemon.cli.context import Context
from daemon.cli.errors import CliError
from daemon.cli.output import Progress, fmt_bytes
from daemon.core.models import LANGUAGES


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    p = commands.add_parser(
        "validate",
        parents=[common],
        help="check a project archive or folder without creating anything",
    )
    p.add_argument("archive", metavar="ARCHIVE|DIR")
    p.add_argument(
        "--language",
        choices=LANGUAGES,
        help="expected language (default: detected from the main file)",
    )
    p.set_defaults(handler=validate)

    p = commands.add_parser("export", parents=[common], help="download a script's project as .zip")
    p.add_argument("name", metavar="NAME")
    p.add_argument("-o", "--output", metavar="FILE", required=True)
    p.set_defaults(handler=export)

    p = commands.add_parser("sample", parents=[common], help="download a sample project (.zip)")
    p.add_argument("--language", choices=LANGUAGES, required=True)
    p.add_argument("--kind", choices=("functions", "step"), default="functions",
                   help="functions (default) or a code step (main + step.toml)")  # fmt: skip
    p.add_argument("-o", "--output", metavar="FILE", required=True)
    p.set_defaults(handler=sample)


def validate(ctx: Context, args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"archive_id": archives.upload(ctx.client, args.archive)}
    if args.language:
        body["language"] = args.language
    report = ctx.client.call("POST", "/v1/validate", body)
    ctx.show(report, render_scripts.validation_report)
    if not report.get("ok"):
        count = len(report.get("errors") or ())
        raise CliError(f"{args.archive} is not a valid project ({count} errors listed above)")
    return 0


def export(ctx: Context, args: argparse.Namespace) -> int:
    size = download(ctx.client, path_of("v1", "scripts", args.name, "export"), args.output)
    return _saved(ctx, {"script": args.name, "path": args.output, "bytes": size})


def sample(ctx: Context, args: argparse.Namespace) -> int:
    path = path_of("v1", "samples", args.language)
    if args.kind == "step":
        path += "?kind=step"
    size = download(ctx.client, path, args.output)
    return _saved(ctx, {"language": args.language, "kind": args.kind, "path": args.output,
                        "bytes": size})  # fmt: skip


def _saved(ctx: Context, result: dict[str, Any]) -> int:
    if ctx.json:
        ctx.show(result, str)
    else:
        ctx.say(f"Wrote {result['path']} ({fmt_bytes(result['bytes'])})")
    return 0


def download(client: AdminClient, api_path: str, output: str, mode: int = 0o644) -> int:
    """Stream api_path into `output` (file mode `mode`, less the umask) through a temp
    file in the same folder."""
    dest = Path(output).expanduser()
    if dest.is_dir():
        raise CliError(f"{output} is a folder: give a file name, like {output}/project.zip")
    try:
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{dest.name}.", suffix=".part", dir=dest.parent if str(dest.parent) else "."
        )
    except OSError as exc:
        raise CliError(f"cannot write to {dest.parent}: {exc.strerror or exc}") from exc
    tmp = Path(tmp_name)
    progress = Progress(f"{dest.name}", sys.stderr) if sys.stderr.isatty() else None
    try:
        with os.fdopen(fd, "wb") as sink:
            size = client.download(api_path, sink, progress)
        tmp.chmod(mode & ~_umask())
        tmp.replace(dest)
    except OSError as exc:
        _discard(tmp)
        raise CliError(f"cannot write {dest}: {exc.strerror or exc}") from exc
    except BaseException:
        _discard(tmp)
        raise
    finally:
        if progress:
            progress.finish()
    return size


def _discard(tmp: Path) -> None:
    with contextlib.suppress(OSError):
        tmp.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask

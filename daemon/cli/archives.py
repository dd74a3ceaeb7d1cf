"""Project archives on the CLI side: a file is uploaded as it is (streamed); a folder
is first packed into a temporary zip with daemon.archive.intake.pack_directory."""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from daemon.cli.client import AdminClient
from daemon.cli.errors import CliError, report_lines
from daemon.cli.output import Progress
from daemon.core.models import MAIN_FILES

LANGUAGE_OF_MAIN = {main: language for language, main in MAIN_FILES.items()}


STEP_FILE = "step.toml"


@contextmanager
def archive_file(source: str, step_toml: str | None = None) -> Iterator[tuple[Path, str]]:
    """Yields (path of an archive file, the file name to give the daemon); with
    `step_toml`, the archive gets that step.toml added (a folder, or a zip file)."""
    path = Path(source).expanduser()
    if path.is_dir():
        if step_toml is not None and (path / STEP_FILE).exists():
            raise CliError(f"{source} has a {STEP_FILE} already: drop --input/--output or it")
        with tempfile.TemporaryDirectory(prefix="scriptctl-") as tmp:
            name = f"{path.resolve().name or 'project'}.zip"
            packed = Path(tmp) / name
            pack_folder(path, packed)
            if step_toml is not None:
                _add_step_toml(packed, step_toml, source)
            yield packed, name
    elif path.is_file() and step_toml is not None:
        with tempfile.TemporaryDirectory(prefix="scriptctl-") as tmp:
            copy = Path(tmp) / path.name
            shutil.copyfile(path, copy)
            _add_step_toml(copy, step_toml, source)
            yield copy, path.name
    elif path.is_file():
        yield path, path.name
    elif path.exists():
        raise CliError(f"{source} is neither a file nor a folder")
    else:
        raise CliError(f"{source}: no such file or folder")


def pack_folder(folder: Path, out: Path) -> None:
    # Imported here: only commands that pack a folder pay for it.
    from daemon.archive.pack import pack_directory
    from daemon.archive.types import ArchiveError

    try:
        pack_directory(folder, out)
    except ArchiveError as exc:
        report = exc.report.to_json()
        raise CliError(f"cannot pack {folder}: {exc}", details=report_lines(report)) from exc
    except OSError as exc:
        raise CliError(f"cannot pack {folder}: {exc.strerror or exc}") from exc


def _add_step_toml(archive: Path, text: str, source: str) -> None:
    if not zipfile.is_zipfile(archive):
        raise CliError(f"{source}: --input/--output can be added to a folder or a .zip only")
    with zipfile.ZipFile(archive, "a") as zf:
        if STEP_FILE in zf.namelist():
            raise CliError(f"{source} has a {STEP_FILE} already: drop --input/--output or it")
        zf.writestr(STEP_FILE, text)


def step_toml(args: Any) -> str | None:
    """The step.toml that --input/--output (NAME:CODE) describe, or None. --kind step
    alone leaves it to the project's own step.toml; the daemon checks names and codes."""
    inputs, outputs = getattr(args, "step_inputs", []), getattr(args, "step_outputs", [])
    if not inputs and not outputs:
        return None
    if getattr(args, "kind", None) == "functions":
        raise CliError("--input/--output declare a code step: they do not go with --kind functions")
    lines = []
    for table, items in (("inputs", inputs), ("outputs", outputs)):
        lines.append(f"[{table}]")
        for item in items:
            name, colon, code = item.partition(":")
            if not (colon and name and code):
                raise CliError(f"--{table[:-1]} {item!r}: write NAME:CODE, e.g. name:s")
            lines.append(f"{json.dumps(name)} = {json.dumps(code)}")
        lines.append("")
    return "\n".join(lines)


def check_kind(args: Any, source: str, spec: str | None) -> None:
    """--kind against what a folder holds (a file is left to the daemon's validation)."""
    kind, folder = getattr(args, "kind", None), Path(source).expanduser()
    if kind is None or not folder.is_dir():
        return
    has_step_toml = (folder / STEP_FILE).is_file()
    if kind == "step" and spec is None and not has_step_toml:
        raise CliError(f"--kind step: {source} has no {STEP_FILE}; declare --input/--output")
    if kind == "functions" and has_step_toml:
        raise CliError(f"--kind functions: {source} has a {STEP_FILE}, which makes it a step")


def upload(client: AdminClient, source: str, step_toml: str | None = None) -> str:
    """Upload a file or folder as an archive (with `step_toml` added); returns its
    archive_id."""
    with archive_file(source, step_toml) as (path, name):
        progress = Progress(f"uploading {name}", sys.stderr) if sys.stderr.isatty() else None
        try:
            answer = client.upload(path, name, progress)
        finally:
            if progress:
                progress.finish()
    archive_id = answer.get("archive_id") if isinstance(answer, dict) else None
    if not archive_id:
        raise CliError(f"scriptd did not return an archive_id for {source}")
    return str(archive_id)


def detect_language(folder: Path) -> str:
    """python or javascript, from the main file at the folder's root."""
    found = [lang for main, lang in LANGUAGE_OF_MAIN.items() if (folder / main).is_file()]
    if len(found) == 1:
        return found[0]
    if not found:
        raise CliError(
            f"{folder} has neither main.py nor main.js at its root: "
            "add one, or point at the project's own folder"
        )
    raise CliError(f"{folder} has both main.py and main.js: choose with --language")

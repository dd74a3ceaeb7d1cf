"""Project archives on the CLI side: a file is uploaded as it is (streamed); a folder
is first packed into a temporary zip with daemon.archive.intake.pack_directory."""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from daemon.cli.client import AdminClient
from daemon.cli.errors import CliError, report_lines
from daemon.cli.output import Progress
from daemon.core.models import MAIN_FILES

LANGUAGE_OF_MAIN = {main: language for language, main in MAIN_FILES.items()}


@contextmanager
def archive_file(source: str) -> Iterator[tuple[Path, str]]:
    """Yields (path of an archive file, the file name to give the daemon)."""
    path = Path(source).expanduser()
    if path.is_dir():
        with tempfile.TemporaryDirectory(prefix="scriptctl-") as tmp:
            name = f"{path.resolve().name or 'project'}.zip"
            packed = Path(tmp) / name
            pack_folder(path, packed)
            yield packed, name
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


def upload(client: AdminClient, source: str) -> str:
    """Upload a file or folder as an archive; returns its archive_id."""
    with archive_file(source) as (path, name):
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

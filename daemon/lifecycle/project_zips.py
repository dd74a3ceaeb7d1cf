"""The zips a person downloads: a script's project (export) and the sample projects.

A script's archive that is already a zip is given as it is; a tar is unpacked (with
the same checks as a deploy) into a temp folder and packed as a zip. The admin API
and the web console stream the file these return.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from daemon.archive.intake import unpack_archive
from daemon.archive.pack import pack_directory
from daemon.config.archive_limits import ArchiveLimits
from daemon.core.models import Script

__all__ = ["Progress", "export_zip", "export_zip_now", "sample_zip"]

SAMPLES = Path(__file__).resolve().parents[2] / "runtimes" / "samples"


Progress = Callable[[str, int, int], None]  # (phase, bytes done, bytes in all)


async def export_zip(
    script: Script, limits: ArchiveLimits, progress: Progress | None = None
) -> tuple[Path, bool]:
    """(path of a zip of the project, whether it is a temp file to remove).
    `progress` hears the phases ("unpacking", "packing") of a tar made into a zip;
    what it raises stops the export and leaves nothing behind."""
    return await asyncio.to_thread(export_zip_now, script, limits, progress)


def export_zip_now(
    script: Script, limits: ArchiveLimits, progress: Progress | None = None
) -> tuple[Path, bool]:
    """export_zip in the calling thread."""
    path = Path(script.archive.path)
    if _is_zip(path):
        return path, False
    return _repack(path, script.language, limits, progress or _silent), True


def _silent(phase: str, done: int, total: int) -> None:
    pass


def _is_zip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"PK\x03\x04"


def _repack(archive: Path, language: str, limits: ArchiveLimits, progress: Progress) -> Path:
    work = Path(tempfile.mkdtemp(prefix="scriptd-export-"))
    try:
        progress("unpacking", 0, 0)
        report = unpack_archive(archive, work / "src", language, limits)
        progress("packing", 0, report.unpacked_bytes)
        fd, out = tempfile.mkstemp(prefix="scriptd-export-", suffix=".zip")
        os.close(fd)
        try:
            pack_directory(work / "src", Path(out), lambda d, t: progress("packing", d, t))
        except BaseException:
            os.unlink(out)
            raise
        return Path(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)


async def sample_zip(language: str) -> Path:
    def pack() -> Path:
        fd, out = tempfile.mkstemp(prefix="scriptd-sample-", suffix=".zip")
        os.close(fd)
        pack_directory(SAMPLES / language, Path(out))
        return Path(out)

    return await asyncio.to_thread(pack)

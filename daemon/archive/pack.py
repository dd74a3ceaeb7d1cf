"""Packing a project folder into a deterministic zip (CLI `up DIR`, folders given
as archives, export).

The same folder always gives the same bytes: entries sorted by path, a fixed
timestamp (1980-01-01), modes 0644/0755, deflate. Folders named in SKIP_DIRS are
left out at any depth (caches, VCS data, installed dependencies). A symbolic link
to a file inside the folder is stored as a copy of that file; any other link, and
any special file, makes packing fail with a report naming each one, so the zip
never holds something the archive rules would refuse.
"""

from __future__ import annotations

import os
import shutil
import stat
import zipfile
from collections.abc import Callable
from pathlib import Path

from daemon.archive.types import ArchiveError, Findings, ValidationReport

SKIP_DIRS = frozenset({"__pycache__", ".git", "node_modules", ".venv"})
FIXED_TIME = (1980, 1, 1, 0, 0, 0)
ZIP64_FROM = 2**31


def pack_directory(
    src: Path, out: Path, progress: Callable[[int, int], None] | None = None
) -> None:
    """Zips the contents of `src` (not the folder itself) into `out`, atomically.
    Raises ArchiveError (report of every problem) or OSError. `progress(done, total)`
    hears the bytes of files packed after each file; what it raises stops the packing
    (nothing is left behind), which is how an export is cancelled."""
    src = src.resolve()
    out = out.absolute()
    if not src.is_dir():
        raise NotADirectoryError(str(src))
    findings = Findings()
    entries = _collect(src, out, findings)
    errors, warnings = findings.finish()
    if errors:
        raise ArchiveError(ValidationReport(False, None, errors, warnings, (), 0, 0))
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    total = sum(path.stat().st_size for _, path in entries if path is not None)
    done = 0
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
            for rel, path in entries:
                done += _add(zf, rel, path)
                if progress is not None:
                    progress(done, total)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _collect(src: Path, out: Path, findings: Findings) -> list[tuple[str, Path | None]]:
    """(archive name, file to read or None for a folder), sorted by name."""
    entries: list[tuple[str, Path | None]] = []
    for dirpath, dirnames, filenames in os.walk(src):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        for d in list(dirnames):
            if (here / d).is_symlink():
                dirnames.remove(d)
                _refuse(findings, src, here / d, "is a link to a folder")
            else:
                entries.append((f"{(here / d).relative_to(src).as_posix()}/", None))
        for name in sorted(filenames):
            path = here / name
            if path == out:
                continue  # packing a folder into a file inside itself
            target = _regular_target(src, path, findings)
            if target is not None:
                entries.append((path.relative_to(src).as_posix(), target))
    entries.sort(key=lambda e: e[0])
    return entries


def _regular_target(src: Path, path: Path, findings: Findings) -> Path | None:
    try:
        real = path.resolve(strict=True)
        mode = real.stat().st_mode
    except (OSError, RuntimeError):
        _refuse(findings, src, path, "is a broken link or cannot be read")
        return None
    if path.is_symlink() and not real.is_relative_to(src):
        _refuse(findings, src, path, "is a link to a file outside the folder")
        return None
    if not stat.S_ISREG(mode):
        _refuse(findings, src, path, "is not a regular file (device, fifo or socket)")
        return None
    return real


def _refuse(findings: Findings, src: Path, path: Path, what: str) -> None:
    rel = path.relative_to(src).as_posix()
    findings.error(
        "cannot_pack",
        f"{rel} {what}.",
        rel,
        "Replace it with a regular file or remove it from the folder.",
    )


def _add(zf: zipfile.ZipFile, name: str, path: Path | None) -> int:
    """Add one entry; the bytes of the file added (0 for a folder)."""
    info = zipfile.ZipInfo(name, FIXED_TIME)
    info.create_system = 3  # unix, so the modes below are read back
    if path is None:
        info.external_attr = (stat.S_IFDIR | 0o755) << 16 | 0x10
        zf.writestr(info, b"")
        return 0
    info.external_attr = (stat.S_IFREG | 0o644) << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    size = path.stat().st_size
    with open(path, "rb") as f, zf.open(info, "w", force_zip64=size >= ZIP64_FROM) as w:
        shutil.copyfileobj(f, w, 1024 * 1024)
    return size

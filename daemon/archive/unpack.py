"""Writing a validated archive to disk, all or nothing.

Files land in a fresh temporary directory beside the destination (same
filesystem), created with modes we choose (files 0644, directories 0755, never
setuid/setgid, owned by the daemon's user, i.e. root in production), and the
directory is renamed into place only when every entry is written. Any failure
removes the temporary directory.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

FILE_MODE = 0o644
DIR_MODE = 0o755
_OPEN_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class SinkError(Exception):
    """Writing failed (the cause is the OSError); kept apart from archive read errors."""


class WriteSink:
    """Scan sink that writes below `root`; names arrive already normalised and checked."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def directory(self, path: str) -> None:
        try:
            self._mkdirs(path)
        except OSError as e:
            raise SinkError(str(e)) from e

    def file(self, path: str, chunks: Iterator[bytes]) -> None:
        try:
            self._write(path, chunks)
        except OSError as e:
            raise SinkError(str(e)) from e

    def _write(self, path: str, chunks: Iterator[bytes]) -> None:
        parent, _, _ = path.rpartition("/")
        if parent:
            self._mkdirs(parent)
        fd = os.open(self.root / path, _OPEN_FLAGS, FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            os.fchmod(fd, FILE_MODE)  # the umask must not decide
            for chunk in chunks:
                f.write(chunk)

    def _mkdirs(self, path: str) -> None:
        current = self.root
        for part in path.split("/"):
            current = current / part
            try:
                os.mkdir(current, DIR_MODE)
            except FileExistsError:
                if current.is_symlink() or not current.is_dir():
                    raise
                continue
            os.chmod(current, DIR_MODE)


def staging_dir(dest: Path) -> Path:
    """A new empty directory beside `dest`, for the unpack to fill."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.unpack-", dir=dest.parent))
    os.chmod(tmp, DIR_MODE)
    return tmp


def commit(tmp: Path, dest: Path) -> None:
    """Renames the finished tree into place. `dest` must not exist, or be an empty folder."""
    if dest.is_symlink():
        raise FileExistsError(f"{dest} is a symbolic link")
    os.rename(tmp, dest)


def discard(tmp: Path) -> None:
    shutil.rmtree(tmp, ignore_errors=True)

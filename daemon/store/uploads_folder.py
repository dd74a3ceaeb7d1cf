"""The account's uploaded files: one flat folder, UPLOADS_DIR (read-only) in
every replica of every script.

The folder (``Config.uploads_dir``) holds regular files only, by the name the
administrator gave (letters, digits, ``.``, ``_``, ``-``: safe in any shell and
any language's path handling). A new file is written to a hidden temporary file in the
same folder and linked into place only when complete, so a replica never sees
half a file and a failed upload leaves nothing. Names starting with ``.`` are
refused (and never listed): they are the temporary files' namespace.

Files are world-readable (0644, folder 0755): each script runs as a uid of its
own, and every script of the account may read every upload.

Every function here blocks: call it through ``asyncio.to_thread``.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any
from urllib.parse import unquote

from daemon.core.errors import BadRequest, Conflict, NotFound, PayloadTooLarge

__all__ = [
    "NAME_MAX_BYTES",
    "SAFE_NAME",
    "StoredFile",
    "abandon",
    "commit",
    "delete_file",
    "file_name",
    "folder_total",
    "list_files",
    "open_temporary",
    "sweep_temporaries",
]

NAME_MAX_BYTES = 255  # the file system's limit on one name
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")


@dataclass(frozen=True, slots=True)
class StoredFile:
    name: str
    size: int
    modified_at: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "size": self.size, "modified_at": self.modified_at}


def file_name(raw: str | None, *, quoted: bool = False) -> str:
    """The checked name of an upload: 1 to 255 letters, digits, ``.``, ``_``
    or ``-``, starting with a letter or digit, no ``..`` (the gateway's
    ``PUT /v1/uploads/NAME`` takes the same names). ``quoted``: ``raw`` is
    URL-quoted (an ``X-Filename`` header)."""
    if raw is None or not raw.strip():
        raise BadRequest("no file name: send the header X-Filename (scriptctl uploads add sets it)")
    name = unquote(raw) if quoted else raw
    if not SAFE_NAME.fullmatch(name) or ".." in name:
        shown = name if len(name) <= 80 else name[:77] + "..."
        raise BadRequest(
            f"file name {shown!r} is not allowed: use 1 to {NAME_MAX_BYTES} letters, digits, "
            "'.', '_' or '-', starting with a letter or digit (no '..')",
            field="filename",
        )
    return name


def _folder(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)
    return root


def list_files(root: Path) -> list[StoredFile]:
    """The files, by name (temporary and other hidden entries left out)."""
    if not root.is_dir():
        return []
    found = []
    with os.scandir(root) as entries:
        for entry in entries:
            if entry.name.startswith(".") or not entry.is_file(follow_symlinks=False):
                continue
            st = entry.stat(follow_symlinks=False)
            found.append(StoredFile(entry.name, st.st_size, _iso(st.st_mtime)))
    return sorted(found, key=lambda f: f.name)


def open_temporary(root: Path) -> tuple[Path, IO[bytes]]:
    """A new hidden file in the folder, open for writing."""
    folder = _folder(root)
    path = folder / f".upload-{secrets.token_hex(8)}.part"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    return path, os.fdopen(fd, "wb")


def folder_total(root: Path, leave_out: str | None = None) -> int:
    """The bytes of the folder's regular files (temporaries and ``leave_out``,
    the file an upload replaces, not counted): one scandir, no recursion."""
    total = 0
    with os.scandir(root) as entries:
        for entry in entries:
            if entry.name.startswith(".") or entry.name == leave_out:
                continue
            if entry.is_file(follow_symlinks=False):
                total += entry.stat(follow_symlinks=False).st_size
    return total


def commit(
    temporary: Path, root: Path, name: str, replace: bool, max_total: int | None = None
) -> StoredFile:
    """Give the complete temporary file its name. Without ``replace``, an
    existing file of that name is a Conflict (checked atomically by link).
    ``max_total``: refuse (PayloadTooLarge, temporary removed) a file that would
    take the folder's total past it; a replaced file's old size is not counted."""
    os.chmod(temporary, 0o644)
    target = root / name
    try:
        if max_total is not None:
            _check_total(temporary, root, name, max_total)
        if replace:
            if target.is_dir() and not target.is_symlink():
                raise Conflict(f"{name!r} is a folder in the uploads dir: delete it there first")
            os.replace(temporary, target)
        else:
            os.link(temporary, target, follow_symlinks=False)
    except FileExistsError:
        raise Conflict(
            f"a file named {name!r} is already uploaded: delete it first or replace it "
            "(scriptctl uploads add --replace)"
        ) from None
    finally:
        abandon(temporary)
    st = target.stat(follow_symlinks=False)
    return StoredFile(name, st.st_size, _iso(st.st_mtime))


def _check_total(temporary: Path, root: Path, name: str, max_total: int) -> None:
    # Two uploads committing at the same moment may both pass: the limit keeps
    # the disk from filling up, it is not an exact quota.
    total = folder_total(root, leave_out=name) + temporary.stat().st_size
    if total > max_total:
        raise PayloadTooLarge(
            f"the uploads folder would hold {total} bytes, more than its limit of "
            f"{max_total} bytes (uploads.max_total_bytes): delete files first"
        )


def abandon(temporary: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()


def delete_file(root: Path, name: str) -> None:
    path = root / name
    if not path.is_file() or path.is_symlink() or name.startswith("."):
        raise NotFound(f"no uploaded file named {name!r}")
    path.unlink()


def sweep_temporaries(root: Path) -> int:
    """Remove temporary files a crash left behind; how many."""
    if not root.is_dir():
        return 0
    gone = 0
    for path in root.glob(".upload-*"):
        abandon(path)
        gone += 1
    return gone


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"

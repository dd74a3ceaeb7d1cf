"""The backup file: a gzip-compressed tar (`tar tzf` lists it) of the state dir's data.

    store/scriptd.db                      the database, copied online (SQLite backup API)
    archives/<sha256><suffix>             the project archives of scripts and versions
    scripts/<id>/versions/<N>/build.log   build logs
    files/<name>                          the account's uploads (UPLOADS_DIR)
    workspaces/<id>/...                   WORKSPACE_DIR of each script (with --workspaces):
                                          files, folders and symlinks, owners and modes
    secrets.key                           the integration secrets' key (with --include-key)
    MANIFEST.json                         last: what the file holds, and a sha256 per file

MANIFEST.json: {"format": "scriptd-backup", "format_version", "daemon_version",
"created_at", "created_by", "state_dir" (where it was taken), "schema_version",
"includes": {"workspaces", "secrets_key"}, "files": {member: {"size", "sha256"}}}.
It comes last because the checksums are known only once every file is written; a
reader verifies every regular member against it before anything is put in place.
Every function here blocks.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MANIFEST",
    "BackupFormatError",
    "BackupWriter",
    "Manifest",
    "file_sha256",
]

FORMAT = "scriptd-backup"
FORMAT_VERSION = 1
MANIFEST = "MANIFEST.json"
DATABASE = "store/scriptd.db"
KEY = "secrets.key"
TOP_LEVEL = frozenset({"store", "archives", "scripts", "files", "workspaces", KEY, MANIFEST})
GZIP_LEVEL = 6
BLOCK = 1 << 20


class BackupFormatError(Exception):
    """Not a scriptd backup, or one that is damaged."""


@dataclass
class Manifest:
    daemon_version: str
    created_at: str
    created_by: str
    state_dir: str
    schema_version: int
    workspaces: bool
    secrets_key: bool
    files: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "daemon_version": self.daemon_version,
            "created_at": self.created_at,
            "created_by": self.created_by,
            "state_dir": self.state_dir,
            "schema_version": self.schema_version,
            "includes": {"workspaces": self.workspaces, "secrets_key": self.secrets_key},
            "files": self.files,
        }

    @classmethod
    def from_json(cls, doc: Any) -> Manifest:
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise BackupFormatError(f"{MANIFEST} does not describe a scriptd backup")
        if doc.get("format_version") != FORMAT_VERSION:
            raise BackupFormatError(
                f"backup format version {doc.get('format_version')!r}: this scriptd reads "
                f"version {FORMAT_VERSION} only"
            )
        try:
            includes = doc["includes"]
            return cls(
                str(doc["daemon_version"]), str(doc["created_at"]), str(doc["created_by"]),
                str(doc["state_dir"]), int(doc["schema_version"]),
                bool(includes["workspaces"]), bool(includes["secrets_key"]), dict(doc["files"]),
            )  # fmt: skip
        except (KeyError, TypeError, ValueError) as exc:
            raise BackupFormatError(f"{MANIFEST} lacks a field or has a bad one: {exc}") from None


class _HashingReader(io.RawIOBase):
    """Reads `source`, hashing what passes (tarfile reads a member's body from it)."""

    def __init__(self, source: IO[bytes]) -> None:
        self.source = source
        self.digest = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self.source.read(size)
        self.digest.update(data)
        return data


class BackupWriter:
    """Writes members into a streamed tar.gz on `sink`, recording each file's checksum."""

    def __init__(self, sink: IO[bytes], manifest: Manifest) -> None:
        self.manifest = manifest
        self._gzip = gzip.GzipFile(fileobj=sink, mode="wb", compresslevel=GZIP_LEVEL, mtime=0)
        self._tar = tarfile.open(  # noqa: SIM115 - closed by finish()
            fileobj=self._gzip, mode="w|", format=tarfile.PAX_FORMAT
        )

    def add_file(self, name: str, path: Path) -> bool:
        """Add a regular file under `name`; False when it went away meanwhile."""
        try:
            f = open(path, "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            return False
        with f:
            info = self._tar.gettarinfo(arcname=name, fileobj=f)
            if info.islnk():  # a second name of a file already in: stored again, whole
                info.type, info.linkname = tarfile.REGTYPE, ""
                info.size = os.fstat(f.fileno()).st_size
            reader = _HashingReader(f)
            self._tar.addfile(info, reader)  # reads exactly info.size bytes
        self.manifest.files[name] = {"size": info.size, "sha256": reader.digest.hexdigest()}
        return True

    def add_tree(self, prefix: str, root: Path, skip: frozenset[str] = frozenset()) -> int:
        """Add the folder `root` as `prefix/...`: files, folders and symlinks (never
        followed) with owners and modes. Top-level names in `skip` are left out."""
        count = 0
        for path in _walk(root, skip):
            name = f"{prefix}/{path.relative_to(root)}" if path != root else prefix
            if path.is_file() and not path.is_symlink():
                count += self.add_file(name, path)
            else:
                self._tar.add(path, arcname=name, recursive=False)
        return count

    def finish(self) -> None:
        """Write MANIFEST.json last and close the tar and the gzip stream."""
        body = orjson.dumps(self.manifest.to_json(), option=orjson.OPT_INDENT_2)
        info = tarfile.TarInfo(MANIFEST)
        info.size, info.mode = len(body), 0o600
        self._tar.addfile(info, io.BytesIO(body))
        self._tar.close()
        self._gzip.close()


def _walk(root: Path, skip: frozenset[str]) -> Iterator[Path]:
    yield root
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        if here == root:
            dirs[:] = [d for d in dirs if d not in skip]
            files = [f for f in files if f not in skip]
        dirs.sort()
        for name in sorted(files) + dirs:
            yield here / name


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(BLOCK):
            digest.update(chunk)
    return digest.hexdigest()

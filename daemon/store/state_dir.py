"""Where scriptd keeps files in its state dir, and the blocking work on them.

    <state>/scriptd.db                 the store (plus -wal, -shm)
    <state>/uploads/<id>/<filename>    staged archives: uploaded with POST /v1/archives, kept
                                       `archive.upload_ttl_s` until a create or update uses them
    <state>/archives/<sha256><suffix>  project archives of scripts, by content
    <state>/scripts/<id>/versions/<N>/src        a version's unpacked project
    <state>/scripts/<id>/versions/<N>/build.log  its build log
    <state>/scripts/<id>/workspace     WORKSPACE_DIR: kept across versions
    <state>/scripts/.trash-<id>-<hex>  a deleted script's folder, being removed
    <cache>/envs/<key>                 built environments (daemon/build/builder.py)

Every function here blocks: call it through asyncio.to_thread.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from daemon.core.models import ArchiveRef

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip", ".gz")


@dataclass(frozen=True)
class StagedArchive:
    archive_id: str
    filename: str
    size: int
    path: Path


class StateDirBusy(Exception):
    """Another process (a running scriptd, a restore) holds the state dir's lock."""


class StateDir:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.db = root / "scriptd.db"
        self.staging = root / "uploads"
        self.archives = root / "archives"
        self.scripts = root / "scripts"

    def prepare(self) -> None:
        for d in (self.root, self.staging, self.archives, self.scripts):
            d.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o711)
        # Projects may hold secrets of their own: only the daemon reads them here
        # (sandboxes see a version's files through bind mounts, not these paths).
        for d in (self.staging, self.archives, self.scripts):
            os.chmod(d, 0o700)

    def lock(self) -> IO[str]:
        """Hold the state dir for this process (one daemon, or one restore, at a time);
        released when the returned file closes. StateDirBusy names the holder's pid."""
        lock = open(self.root / "scriptd.lock", "a+")  # noqa: SIM115 - the caller closes it
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "unknown"
            lock.close()
            raise StateDirBusy(
                f"another scriptd (pid {holder}) uses the state dir {self.root}"
            ) from None
        lock.truncate(0)
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        return lock

    def script_dir(self, script_id: int) -> Path:
        return self.scripts / str(script_id)

    def workspace(self, script_id: int) -> Path:
        return self.script_dir(script_id) / "workspace"

    def version_dir(self, script_id: int, number: int) -> Path:
        return self.script_dir(script_id) / "versions" / str(number)

    def source_dir(self, script_id: int, number: int) -> Path:
        return self.version_dir(script_id, number) / "src"

    def build_log(self, script_id: int, number: int) -> Path:
        return self.version_dir(script_id, number) / "build.log"

    # --- staged archives (not the account's uploads: daemon/store/uploads_folder.py) ---

    def stage_archive(self, filename: str) -> StagedArchive:
        archive_id = secrets.token_hex(16)
        folder = self.staging / archive_id
        folder.mkdir(mode=0o700)
        return StagedArchive(archive_id, filename, 0, folder / filename)

    def find_staged_archive(self, archive_id: str) -> StagedArchive | None:
        folder = self.staging / archive_id
        files = list(folder.iterdir()) if folder.is_dir() else []
        if len(files) != 1:
            return None
        return StagedArchive(archive_id, files[0].name, files[0].stat().st_size, files[0])

    def drop_staged_archive(self, archive_id: str) -> None:
        shutil.rmtree(self.staging / archive_id, ignore_errors=True)

    def sweep_staged_archives(self, ttl_s: int) -> int:
        """Remove staged archives older than `ttl_s`; the count removed."""
        cutoff, removed = time.time() - ttl_s, 0
        for folder in self.staging.iterdir():
            if folder.stat().st_mtime < cutoff:
                shutil.rmtree(folder, ignore_errors=True)
                removed += 1
        return removed

    # --- archives of scripts -------------------------------------------------------

    def keep_archive(self, upload: StagedArchive) -> ArchiveRef:
        """Copy a staged archive into the content-addressed archive folder (linked when
        possible)."""
        sha = _sha256(upload.path)
        suffix = next((s for s in ARCHIVE_SUFFIXES if upload.filename.endswith(s)), "")
        dest = self.archives / f"{sha}{suffix}"
        if not dest.exists():
            # Unique per call: two threads may keep the same content at once.
            tmp = dest.with_name(f"{dest.name}.tmp-{os.getpid()}-{secrets.token_hex(6)}")
            try:
                os.link(upload.path, tmp)
            except OSError:
                shutil.copyfile(upload.path, tmp)
            os.replace(tmp, dest)
        return ArchiveRef(upload.filename, sha, upload.size, str(dest))

    def sweep_archives(self, in_use: set[str]) -> None:
        """Remove archive files no script or version refers to (paths in `in_use`).
        Files younger than an hour stay: a create may be about to refer to one."""
        cutoff = time.time() - 3600
        for path in self.archives.iterdir():
            if str(path) not in in_use and path.stat().st_mtime < cutoff:
                path.unlink(missing_ok=True)

    def trash_script_files(self, script_id: int) -> Path | None:
        """Move the script's folder aside, to `scripts/.trash-<id>-<random>`, so that
        no later script can ever find files of this one at `scripts/<id>/`; the
        caller removes the trash (`remove_trash`). None when there was no folder."""
        trash = self.scripts / f".trash-{script_id}-{secrets.token_hex(6)}"
        try:
            os.rename(self.script_dir(script_id), trash)
        except FileNotFoundError:
            return None
        return trash

    def untrash_script_files(self, script_id: int, trash: Path) -> None:
        """Put a folder moved aside back (the delete it was for did not happen)."""
        os.rename(trash, self.script_dir(script_id))

    def remove_trash(self, trash: Path) -> None:
        shutil.rmtree(trash, ignore_errors=True)

    def sweep_script_dirs(self, live_ids: set[int]) -> None:
        """Remove the folders of scripts that are no longer in the store, and any
        trash a delete left behind (names that are not a script id)."""
        for folder in self.scripts.iterdir():
            if not folder.name.isdigit() or int(folder.name) not in live_ids:
                shutil.rmtree(folder, ignore_errors=True)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()

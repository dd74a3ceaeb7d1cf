"""An online backup of the daemon's state, while scripts serve (GET /v1/backup).

What it holds and the file's format: daemon/store/backup_format.py. The order is
the consistency argument: the database is copied first (SQLite's backup API, a
point in time), then the files it refers to. Project archives are content-addressed
and never change; an archive the copy refers to is kept on disk until the next start
at least (the sweep runs only then), so each one is found. Build logs and uploads are
what they are when read. Each workspace is read frozen (or read-only mounted when no
replica runs), so its files are one point in time each, per script.

The secrets key is left out unless asked for: with it, the file decrypts every
integration secret. Every function here blocks: run `write_backup` in a thread.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import IO

from daemon.config.daemon_config import Config
from daemon.core.models import now_iso
from daemon.serving.workspace_image import read_view
from daemon.store.backup_format import DATABASE, KEY, BackupWriter, Manifest
from daemon.store.database import Store
from daemon.store.secret_box import key_path
from daemon.store.snapshot import archive_names, script_ids
from daemon.store.state_dir import StateDir

__all__ = ["BackupError", "BackupOptions", "daemon_version", "remove_leftovers", "write_backup"]

log = logging.getLogger(__name__)


class BackupError(Exception):
    """The backup cannot be completed (the reason says what is missing)."""


@dataclass(frozen=True)
class BackupOptions:
    workspaces: bool = False
    include_key: bool = False


def daemon_version() -> str:
    try:
        return metadata.version("scriptd")
    except metadata.PackageNotFoundError:
        return "unknown"


def write_backup(
    store: Store, state: StateDir, config: Config, sink: IO[bytes], options: BackupOptions,
    caller: str,
) -> Manifest:  # fmt: skip
    """Stream a backup into `sink`; the manifest written at its end."""
    work = state.root / f".backup-{secrets.token_hex(6)}"
    work.mkdir(mode=0o700)
    try:
        db = work / "scriptd.db"
        store.snapshot_to(db)
        manifest = Manifest(
            daemon_version(), now_iso(), caller, str(state.root), store.schema_version,
            options.workspaces, options.include_key,
        )  # fmt: skip
        _check_archives(state, archive_names(db))  # before a byte is sent
        writer = BackupWriter(sink, manifest)
        writer.add_file(DATABASE, db)
        _add_archives(writer, state)
        _add_build_logs(writer, state)
        _add_uploads(writer, config.uploads_dir)
        if options.workspaces:
            for script_id in script_ids(db):
                _add_workspace(writer, state, script_id)
        if options.include_key:
            _add_key(writer, store)
        writer.finish()
        return manifest
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _check_archives(state: StateDir, wanted: set[str]) -> None:
    missing = sorted(n for n in wanted if not (state.archives / n).is_file())
    if missing:
        raise BackupError(
            f"archives the store refers to are missing from {state.archives}: " + ", ".join(missing)
        )


def _add_archives(writer: BackupWriter, state: StateDir) -> None:
    """Every archive file (those of deleted scripts too, until swept)."""
    for path in sorted(state.archives.iterdir()):
        if ".tmp-" not in path.name and path.is_file():
            writer.add_file(f"archives/{path.name}", path)


def _add_build_logs(writer: BackupWriter, state: StateDir) -> None:
    for path in sorted(state.scripts.glob("*/versions/*/build.log")):
        writer.add_file(str(path.relative_to(state.root)), path)


def _add_uploads(writer: BackupWriter, folder: Path) -> None:
    """The account's files; hidden names are uploads being written."""
    if not folder.is_dir():
        return
    for path in sorted(folder.iterdir()):
        if not path.name.startswith(".") and path.is_file() and not path.is_symlink():
            writer.add_file(f"files/{path.name}", path)


def _add_workspace(writer: BackupWriter, state: StateDir, script_id: int) -> None:
    with read_view(state.workspace(script_id)) as view:
        if view is not None:
            count = writer.add_tree(f"workspaces/{script_id}", view, frozenset({"lost+found"}))
            log.info("backup: workspace of script %d, %d files", script_id, count)


def _add_key(writer: BackupWriter, store: Store) -> None:
    path = key_path(store.path)
    if not path.is_file():  # no secret was ever set: there is no key yet
        log.info("backup: no secrets key at %s, none included", path)
        return
    writer.add_file(KEY, path)
    log.warning("backup includes the secrets key (%s): keep the file as secret as the key", path)


def remove_leftovers(state: StateDir) -> None:
    """At start: work folders of backups a crash interrupted."""
    for folder in state.root.glob(".backup-*"):
        shutil.rmtree(folder, ignore_errors=True) if folder.is_dir() else os.unlink(folder)

"""The store's part in backup and restore: an online copy of the database through
SQLite's backup API, the checks a restored copy must pass, and the one rewrite a
copy needs on another state dir (archive paths are stored absolute).

``SnapshotStore`` is a mixin of ``daemon.store.database.Store`` like ``KeysStore``.
The copy is made from the store's own connection, a few MiB per step with the store's
lock held only for that step: writes in between go through the same connection, so
SQLite applies them to the copy as well (it restarts a backup only for writes from
other connections) and the copy is the database as it was when the last step ended.
"""

from __future__ import annotations

import os
from pathlib import Path

import apsw
import orjson

from daemon.store.parts import StoreParts

__all__ = [
    "SnapshotStore",
    "archive_names",
    "first_sealed_secret",
    "relocate_archives",
    "script_ids",
    "snapshot_problems",
]

# 1 MiB of 4 KiB pages per step: the store's lock is held about 2 ms per step, 9 ms at
# most (121 MB store, bench/backup.py)
PAGES_PER_STEP = 256


class SnapshotStore(StoreParts):
    """Online copies of the database; mixed into ``daemon.store.database.Store``."""

    def snapshot_to(self, dest: Path) -> int:
        """Copy the whole database into a new file `dest` (mode 0600); its size."""
        fd = os.open(dest, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        os.close(fd)
        copy = apsw.Connection(str(dest))
        # The copy is a temporary file streamed at once: no journal and no fsync (which
        # at the last step, under the lock, took 0.5 s for 121 MB).
        copy.execute("PRAGMA synchronous=OFF")
        copy.execute("PRAGMA journal_mode=OFF")
        try:
            # apsw refuses a source connection that another thread uses at the same
            # moment: every touch of it (start, each step, finish) holds the store's lock
            with self._lock:
                backup = copy.backup("main", self._db, "main")
            try:
                done = False
                while not done:
                    with self._lock:
                        done = backup.step(PAGES_PER_STEP)
            finally:
                with self._lock:
                    backup.finish()
            copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
        finally:
            copy.close()
        return dest.stat().st_size


def snapshot_problems(db: Path, known_schema: int) -> list[str]:
    """What is wrong with a database file about to be restored (empty: nothing):
    SQLite's integrity_check, and a schema newer than this daemon knows."""
    conn = _read_only(db)
    try:
        problems = [str(row[0]) for row in conn.execute("PRAGMA integrity_check")]
        problems = [p for p in problems if p != "ok"]
        schema = int(str(conn.execute("PRAGMA user_version").fetchall()[0][0]))
    except apsw.Error as exc:
        return [f"not a readable SQLite database: {exc}"]
    finally:
        conn.close()
    if schema > known_schema:
        problems.append(
            f"its schema is version {schema}, newer than this scriptd's ({known_schema}): "
            "restore it with the scriptd that made it, or a newer one"
        )
    return problems


def relocate_archives(db: Path, archives: Path) -> int:
    """Point every stored archive path (scripts, and versions' snapshots) into the
    folder `archives` of the state dir the database now lives in; the rows changed."""
    conn = apsw.Connection(str(db))
    changed = 0
    try:
        with conn:
            for table, column, key in (
                ("scripts", "archive_json", ()),
                ("versions", "config_json", ("archive",)),
            ):
                rows = conn.execute(f"SELECT id, {column} FROM {table}").fetchall()
                for row_id, text in rows:
                    doc = orjson.loads(str(text))
                    ref = doc[key[0]] if key else doc
                    moved = str(archives / Path(ref["path"]).name)
                    if ref["path"] != moved:
                        ref["path"] = moved
                        sql = f"UPDATE {table} SET {column}=? WHERE id=?"
                        conn.execute(sql, (orjson.dumps(doc).decode(), row_id))
                        changed += 1
    finally:
        conn.close()
    return changed


def _read_only(db: Path) -> apsw.Connection:
    return apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)


def script_ids(db: Path) -> list[int]:
    """The ids of the scripts in a copy of the database."""
    conn = _read_only(db)
    try:
        return [int(row[0]) for row in conn.execute("SELECT id FROM scripts ORDER BY id")]
    finally:
        conn.close()


def archive_names(db: Path) -> set[str]:
    """The file names of the archives a copy of the database refers to."""
    conn = _read_only(db)
    try:
        scripts = "SELECT json_extract(archive_json, '$.path') FROM scripts"
        versions = "SELECT json_extract(config_json, '$.archive.path') FROM versions"
        paths = [row[0] for sql in (scripts, versions) for row in conn.execute(sql)]
    finally:
        conn.close()
    return {Path(p).name for p in paths if p}


def first_sealed_secret(db: Path) -> tuple[str, bytes] | None:
    """One integration secret of a database (name, sealed value), to try a key on."""
    conn = _read_only(db)
    try:
        rows = conn.execute("SELECT name, sealed FROM secrets ORDER BY name LIMIT 1").fetchall()
    finally:
        conn.close()
    return (str(rows[0][0]), bytes(rows[0][1])) if rows else None  # type: ignore[arg-type]

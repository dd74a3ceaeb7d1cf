"""The store: SQLite through apsw, the only module of scriptd that speaks SQL.

One connection in WAL mode with foreign keys on, guarded by a lock so the
lifecycle may call any method from worker threads (`asyncio.to_thread`); every
method is one transaction and returns frozen objects from daemon.core.models. The
schema is daemon/store/schema.py's migrations. Every method blocks: never call
one on the event loop.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import apsw

from daemon.core.errors import Conflict
from daemon.core.models import Event, Script, Version
from daemon.store.account_tables import AccountStore
from daemon.store.async_calls_table import AsyncCallsStore
from daemon.store.keys_table import KeysStore
from daemon.store.retention_tables import RetentionStore
from daemon.store.schema import MIGRATIONS
from daemon.store.script_rows import (
    VERSION_COLUMNS,
    config_json,
    dumps,
    event_from_row,
    script_columns,
    script_from_row,
    version_from_row,
)
from daemon.store.secret_box import SecretBox, key_path
from daemon.store.secrets_table import SecretsStore
from daemon.store.snapshot import SnapshotStore
from daemon.store.usage_table import UsageStore

WAL_CHECKPOINT_PAGES = 1000  # SQLite's default autocheckpoint threshold (Store._checkpoint)
WAL_FORCE_PAGES = 4 * WAL_CHECKPOINT_PAGES  # writes outside `_tx` alone: in the commit


class Store(KeysStore, AccountStore, SecretsStore, RetentionStore, SnapshotStore,
            AsyncCallsStore, UsageStore):  # fmt: skip
    """The registry of scripts, versions and their history events; API keys
    and execution records come from the KeysStore mixin (daemon/store/keys_table.py); credits,
    the usage ledger and the outbox from AccountStore (daemon/store/account_tables.py);
    integration secrets from SecretsStore (daemon/store/secrets_table.py); pruning and
    sizes from RetentionStore (daemon/store/retention_tables.py); online copies for
    backups from SnapshotStore (daemon/store/snapshot.py); the queue of asynchronous
    calls from AsyncCallsStore (daemon/store/async_calls_table.py); what the console's
    charts read from UsageStore (daemon/store/usage_table.py)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.RLock()
        self.secret_box = SecretBox(key_path(path))  # the key is read or made on first use
        # Secret values are sealed, yet names, scripts and records are nobody else's
        # business: the file (and so its -wal and -shm, which SQLite creates with the
        # database's mode) is for the daemon's user only.
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        os.chmod(path, 0o600)
        self._db = apsw.Connection(str(path))
        self._db.setbusytimeout(5000)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._wal_pages = 0
        self._db.set_wal_hook(self._count_wal_pages)  # in place of SQLite's autocheckpoint
        self._migrate()

    # --- plumbing ------------------------------------------------------------------

    def _migrate(self) -> None:
        """Apply the missing migrations in one transaction, with foreign keys off
        (a table rebuild drops a table that others refer to: with them on, the
        drop would cascade), and refuse to commit if a reference is left broken."""
        done = self._one("PRAGMA user_version")["user_version"]
        if done >= len(MIGRATIONS):
            return
        self._db.execute("PRAGMA foreign_keys=OFF")  # a no-op inside a transaction
        try:
            with self._tx():
                done = self._one("PRAGMA user_version")["user_version"]
                for number, step in enumerate(MIGRATIONS[done:], start=done + 1):
                    if isinstance(step, str):
                        self._db.execute(step)
                    else:
                        step(self._db, self.secret_box)
                    self._db.execute(f"PRAGMA user_version={number}")
                broken = self._rows("PRAGMA foreign_key_check")
                if broken:
                    raise RuntimeError(f"migration left broken references: {broken[:5]}")
        finally:
            self._db.execute("PRAGMA foreign_keys=ON")
        if done and any(not isinstance(step, str) for step in MIGRATIONS[done:]):
            self._scrub_free_space()

    def _scrub_free_space(self) -> None:
        """After a data step rewrote values (secrets sealed in place of clear ones), the
        old bytes may linger in freed pages and in the WAL: rebuild the file and empty
        the WAL, so no clear value stays anywhere on disk. Runs once per such step."""
        with self._lock:
            self._db.execute("VACUUM")
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    @property
    def schema_version(self) -> int:
        with self._lock:
            return int(self._one("PRAGMA user_version")["user_version"])

    @contextmanager
    def _tx(self) -> Iterator[None]:
        with self._lock:
            with self._db:
                yield
            if self._wal_pages >= WAL_CHECKPOINT_PAGES and not self._db.in_transaction:
                self._checkpoint()  # (not from a nested _tx: the outer one is still open)

    def _count_wal_pages(self, db: apsw.Connection, name: str, pages: int) -> int:
        """After every commit. A log that no transaction (`_tx`) came by to fold back
        is checkpointed here, inside the commit, as SQLite's autocheckpoint would."""
        self._wal_pages = pages
        if pages >= WAL_FORCE_PAGES:
            db.wal_checkpoint(name)
            self._wal_pages = 0
        return apsw.SQLITE_OK

    def _checkpoint(self) -> None:
        """Fold the write-ahead log back into the database, as a statement after the
        commit. SQLite's own autocheckpoint runs inside the commit that crosses its
        threshold, and apsw commits holding the GIL: every ~9,000 execution records
        the event loop's thread stood still for the checkpoint (copy and fsync; 34 ms,
        bench/store_gaps.py). apsw runs a statement's step without the GIL (8 ms)."""
        self._wal_pages = 0
        self._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    def _rows(self, sql: str, args: Any = ()) -> list[dict[str, Any]]:
        cursor = self._db.execute(sql, args)
        try:
            names = [d[0] for d in cursor.getdescription()]
        except apsw.ExecutionCompleteError:
            return []
        return [dict(zip(names, row, strict=True)) for row in cursor]

    def _one(self, sql: str, args: Any = ()) -> dict[str, Any]:
        rows = self._rows(sql, args)
        return rows[0] if rows else {}

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- scripts -------------------------------------------------------------------

    def insert_script(self, script: Script, event: Event | None = None) -> Script:
        """Insert a new script (its id is ignored). Conflict if the name is taken."""
        cols = script_columns(script, self.secret_box)
        sql = f"INSERT INTO scripts ({','.join(cols)}) VALUES ({','.join('?' * len(cols))})"
        try:
            with self._tx():
                self._db.execute(sql, tuple(cols.values()))
                script_id = self._db.last_insert_rowid()
                if event is not None:
                    self._insert_event(script_id, event)
        except apsw.ConstraintError:
            raise Conflict(f"a script named {script.name!r} already exists") from None
        return self._get("id", script_id)

    def save_script(self, script: Script, event: Event | None = None) -> Script:
        """Write every column of `script` (found by id), with an optional event."""
        cols = script_columns(script, self.secret_box)
        sql = f"UPDATE scripts SET {','.join(f'{c}=?' for c in cols)} WHERE id=?"
        try:
            with self._tx():
                self._db.execute(sql, (*cols.values(), script.id))
                if event is not None:
                    self._insert_event(script.id, event)
        except apsw.ConstraintError:
            raise Conflict(f"a script named {script.name!r} already exists") from None
        return self._get("id", script.id)

    def _get(self, column: str, value: Any) -> Script:
        with self._lock:
            row = self._one(f"SELECT * FROM scripts WHERE {column}=?", (value,))
        if not row:
            raise LookupError(f"no script with {column} {value!r}")
        return script_from_row(row)

    def get_script(self, name: str) -> Script | None:
        with self._lock:
            row = self._one("SELECT * FROM scripts WHERE name=?", (name,))
        return script_from_row(row) if row else None

    def get_script_by_id(self, script_id: int) -> Script | None:
        with self._lock:
            row = self._one("SELECT * FROM scripts WHERE id=?", (script_id,))
        return script_from_row(row) if row else None

    def list_scripts(self, search: str | None = None) -> list[Script]:
        """All scripts by name; `search` keeps names containing it (any case)."""
        sql, args = "SELECT * FROM scripts ORDER BY name", ()
        if search:
            escaped = search.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            sql = "SELECT * FROM scripts WHERE lower(name) LIKE ? ESCAPE '\\' ORDER BY name"
            args = (f"%{escaped}%",)  # type: ignore[assignment]
        with self._lock:
            return [script_from_row(r) for r in self._rows(sql, args)]

    def delete_script(self, script_id: int) -> None:
        """Remove the script and, by cascade, its versions, events, keys, executions."""
        with self._tx():
            self._db.execute("DELETE FROM scripts WHERE id=?", (script_id,))

    # --- versions ------------------------------------------------------------------

    def next_version_number(self, script_id: int) -> int:
        with self._lock:
            row = self._one("SELECT max(number) AS n FROM versions WHERE script_id=?", (script_id,))
        return int(row.get("n") or 0) + 1

    def begin_version(self, script: Script, version: Version, event: Event) -> Version:
        """Atomically: save the script (now Deploying), add the version and an event."""
        cols = {k: getattr(version, k) for k in VERSION_COLUMNS if k != "config_json"}
        cols["config_json"] = config_json(version.config, self.secret_box)
        sql = f"INSERT INTO versions ({','.join(cols)}) VALUES ({','.join('?' * len(cols))})"
        with self._tx():
            self.save_script(script)
            self._db.execute(sql, tuple(cols.values()))
            version_id = self._db.last_insert_rowid()
            self._insert_event(script.id, event)
        return self.get_version_by_id(version_id)

    def save_version(
        self, version: Version, script: Script | None = None, event: Event | None = None
    ) -> Version:
        """Write `version` (by id), and with it, atomically, `script` and `event`."""
        cols = {k: getattr(version, k) for k in VERSION_COLUMNS if k != "config_json"}
        cols["config_json"] = config_json(version.config, self.secret_box)
        sql = f"UPDATE versions SET {','.join(f'{c}=?' for c in cols)} WHERE id=?"
        try:
            with self._tx():
                self._db.execute(sql, (*cols.values(), version.id))
                if script is not None:
                    self.save_script(script)
                if event is not None:
                    self._insert_event(version.script_id, event)
        except apsw.ConstraintError:
            raise Conflict(
                f"another version of this script is already named {version.display_name!r}"
            ) from None
        return self.get_version_by_id(version.id)

    def get_version_by_id(self, version_id: int) -> Version:
        with self._lock:
            return version_from_row(self._one("SELECT * FROM versions WHERE id=?", (version_id,)))

    def get_version(self, script_id: int, number: int) -> Version | None:
        with self._lock:
            row = self._one(
                "SELECT * FROM versions WHERE script_id=? AND number=?", (script_id, number)
            )
        return version_from_row(row) if row else None

    def list_versions(self, script_id: int) -> list[Version]:
        """Newest first."""
        with self._lock:
            rows = self._rows(
                "SELECT * FROM versions WHERE script_id=? ORDER BY number DESC", (script_id,)
            )
        return [version_from_row(r) for r in rows]

    def versions_in_status(self, status: str) -> list[Version]:
        with self._lock:
            rows = self._rows("SELECT * FROM versions WHERE status=? ORDER BY id", (status,))
        return [version_from_row(r) for r in rows]

    def env_keys_in_use(self) -> set[str]:
        with self._lock:
            rows = self._rows("SELECT DISTINCT env_key FROM versions WHERE env_key IS NOT NULL")
        return {r["env_key"] for r in rows}

    # --- events --------------------------------------------------------------------

    def _insert_event(self, script_id: int, event: Event) -> None:
        self._db.execute(
            "INSERT INTO events (script_id, at, kind, actor, detail_json) VALUES (?,?,?,?,?)",
            (script_id, event.at, event.kind, event.actor, dumps(event.detail)),
        )

    def add_event(self, script_id: int, event: Event) -> None:
        with self._tx():
            self._insert_event(script_id, event)

    def list_events(self, script_id: int) -> list[Event]:
        """Oldest first."""
        with self._lock:
            rows = self._rows("SELECT * FROM events WHERE script_id=? ORDER BY id", (script_id,))
        return [event_from_row(r) for r in rows]

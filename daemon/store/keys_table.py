"""The store's SQL for API keys and execution records.

``KeysStore`` is a mixin of ``daemon.store.database.Store``: its methods share the
Store's one apsw connection and lock, so "the store alone speaks SQL" stays
true and callers write ``store.get_api_key(key_id)``. Like every Store method,
each one blocks and is one transaction: never call one on the event loop.

Key rows never leave here with their hash except through ``get_api_key``, the
gateway's lookup (``daemon.keys.api_key.KeyRecord``); listings carry ``ApiKeyInfo``.
Execution rows come in as ``ExecutionRow`` batches from the recorder and go out
as the same objects, newest first.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from typing import Any

import apsw
import orjson

from daemon.core.errors import Conflict, NotFound
from daemon.core.models import Event
from daemon.keys.api_key import KeyNameTaken, KeyRecord
from daemon.store.parts import StoreParts

__all__ = ["ApiKeyInfo", "ExecutionRow", "KeysStore", "iso_from_unix"]


def iso_from_unix(t: float) -> str:
    """A unix time as the store's ISO-8601 UTC text (milliseconds, ``Z``)."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass(frozen=True, slots=True)
class ApiKeyInfo:
    """One key as people see it: never the secret nor its hash."""

    id: str
    script_id: int
    name: str
    created_by: str
    created_at: str
    last_used_at: str | None

    def to_json(self) -> dict[str, Any]:
        # The id is the public half of the key: shown so a person can tell
        # which key a log line or an execution names.
        return {
            "id": self.id,
            "name": self.name,
            "created_by": self.created_by,
            "created_at": self.created_at,
            "last_used_at": self.last_used_at,
        }


@dataclass(frozen=True, slots=True)
class ExecutionRow:
    """One call, as recorded. ``result`` and ``error`` are JSON values (the
    error is ``{"type","message","traceback"}``); times are ISO strings."""

    id: str
    script_id: int
    version: int
    function: str
    key_name: str | None
    status: str  # ok / error / timeout / oom / crashed / rejected
    received_at: str
    started_at: str | None = None
    ended_at: str | None = None
    queue_ms: float | None = None
    wall_ms: float | None = None
    cpu_ms: float | None = None
    peak_memory_bytes: int | None = None
    input_bytes: int | None = None
    result: Any = None
    error: dict[str, Any] | None = None
    logs: str | None = None
    http_log: dict[str, Any] | None = None  # the call's outbound HTTP (daemon/egress)
    # inputs (a step's typed inputs, a function's payload), a step's outputs, logs
    # and logs_discarded; values over the recorder's limit are replaced by a note.
    details: dict[str, Any] | None = None

    def to_json(self, script: str | None = None) -> dict[str, Any]:
        """The admin API's shape; ``script`` is the script's name when known."""
        out = asdict(self)
        del out["script_id"]
        if script is not None:
            out = {"script": script, **out}
        return out


_EXEC_FIELDS = tuple(f.name for f in fields(ExecutionRow))
_EXEC_COLUMNS = tuple(
    {
        "result": "result_json",
        "error": "error_json",
        "http_log": "http_log_json",
        "details": "details_json",
    }.get(n, n)
    for n in _EXEC_FIELDS
)
_EXEC_INSERT = (
    f"INSERT OR IGNORE INTO executions ({','.join(_EXEC_COLUMNS)}) "
    f"VALUES ({','.join('?' * len(_EXEC_COLUMNS))})"
)

_ISO_MS = "strftime('%Y-%m-%dT%H:%M:%fZ', ?/1000.0, 'unixepoch')"  # as iso_from_unix
_EXEC_INSERT_UNIX_MS = (
    f"INSERT OR IGNORE INTO executions ({','.join(_EXEC_COLUMNS)}) VALUES "
    f"(?,?,?,?,?,?,{_ISO_MS},{_ISO_MS},{_ISO_MS}{',?' * (len(_EXEC_COLUMNS) - 9)})"
)


def _exec_values(row: ExecutionRow) -> tuple[Any, ...]:
    values = [getattr(row, n) for n in _EXEC_FIELDS]
    for name in _JSON_FIELDS:
        value = getattr(row, name)
        values[_EXEC_FIELDS.index(name)] = None if value is None else orjson.dumps(value).decode()
    return tuple(values)


_JSON_FIELDS = ("result", "error", "http_log", "details")


def _execution(row: Mapping[str, Any]) -> ExecutionRow:
    args = {n: row[c] for n, c in zip(_EXEC_FIELDS, _EXEC_COLUMNS, strict=True)}
    for name in _JSON_FIELDS:
        if args[name] is not None:
            args[name] = orjson.loads(args[name])
    return ExecutionRow(**args)


def _key_info(row: Mapping[str, Any]) -> ApiKeyInfo:
    return ApiKeyInfo(
        row["id"], row["script_id"], row["name"], row["created_by"], row["created_at"],
        row["last_used_at"],
    )  # fmt: skip


def _like(search: str) -> str:
    escaped = search.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class KeysStore(StoreParts):
    """API keys and execution records; mixed into ``daemon.store.database.Store``."""

    # --- API keys ----------------------------------------------------------------

    def get_api_key(self, key_id: str) -> KeyRecord | None:
        """The gateway's lookup: one primary-key read joined to the script's name."""
        with self._lock:
            row = self._one(
                "SELECT k.id, s.name AS script, k.name, k.hash FROM api_keys k "
                "JOIN scripts s ON s.id = k.script_id WHERE k.id=?",
                (key_id,),
            )
        return KeyRecord(row["id"], row["script"], row["name"], row["hash"]) if row else None

    def insert_api_key(
        self,
        script_id: int,
        key_id: str,
        name: str,
        hash_: str,
        created_by: str,
        created_at: str,
        event: Event | None = None,
    ) -> ApiKeyInfo:
        """Store a new key (and its history event). ``KeyNameTaken`` when the
        script already has a key of that name, ``NotFound`` when the script is
        gone, ``Conflict`` when the id exists (the caller mints again)."""
        try:
            with self._tx():
                self._db.execute(
                    "INSERT INTO api_keys (id, script_id, name, hash, created_by, created_at) "
                    "VALUES (?,?,?,?,?,?)",
                    (key_id, script_id, name, hash_, created_by, created_at),
                )
                if event is not None:
                    self._insert_event(script_id, event)
        except apsw.ConstraintError:
            raise self._why_not_inserted(script_id, key_id, name) from None
        return ApiKeyInfo(key_id, script_id, name, created_by, created_at, None)

    def _why_not_inserted(self, script_id: int, key_id: str, name: str) -> Exception:
        with self._lock:
            if not self._one("SELECT 1 AS x FROM scripts WHERE id=?", (script_id,)):
                return NotFound("the script was deleted meanwhile")
            taken = self._one(
                "SELECT 1 AS x FROM api_keys WHERE script_id=? AND name=?", (script_id, name)
            )
        if taken:
            return KeyNameTaken(
                f"this script already has a key named {name!r}: choose another name"
            )
        return Conflict(f"key id {key_id!r} is taken")

    def list_api_keys(self, script_id: int, search: str | None = None) -> list[ApiKeyInfo]:
        """A script's keys, oldest first; ``search`` keeps names containing it
        (any case)."""
        sql = "SELECT * FROM api_keys WHERE script_id=?"
        args: tuple[Any, ...] = (script_id,)
        if search:
            sql += " AND lower(name) LIKE ? ESCAPE '\\'"
            args = (script_id, _like(search))
        with self._lock:
            rows = self._rows(sql + " ORDER BY created_at, rowid", args)
        return [_key_info(r) for r in rows]

    def api_key_names(self, script_id: int) -> list[str]:
        with self._lock:
            rows = self._rows("SELECT name FROM api_keys WHERE script_id=?", (script_id,))
        return [r["name"] for r in rows]

    def delete_api_key(self, script_id: int, name: str, event: Event | None = None) -> str | None:
        """Delete the script's key named exactly ``name`` (and write ``event``);
        its id, or None if there was none. The caller then drops the id from
        the gateway's cache."""
        with self._tx():
            row = self._one(
                "SELECT id FROM api_keys WHERE script_id=? AND name=?", (script_id, name)
            )
            if not row:
                return None
            self._db.execute("DELETE FROM api_keys WHERE id=?", (row["id"],))
            if event is not None:
                self._insert_event(script_id, event)
        return str(row["id"])

    def touch_api_keys_last_used(self, used: Mapping[str, float]) -> None:
        """Write key id -> unix time of last use, in one transaction. Ids of
        keys deleted meanwhile are skipped; a time never moves backwards."""
        if not used:
            return
        args = [(iso_from_unix(t), k, iso_from_unix(t)) for k, t in used.items()]
        with self._tx():
            self._db.executemany(
                "UPDATE api_keys SET last_used_at=? WHERE id=? "
                "AND (last_used_at IS NULL OR last_used_at < ?)",
                args,
            )

    # --- executions --------------------------------------------------------------

    def insert_executions(self, rows: Iterable[ExecutionRow | tuple[Any, ...]]) -> int:
        """Write a batch of records in one transaction; how many were new. A
        record of a script deleted meanwhile is dropped, not an error.

        A record is an ``ExecutionRow`` or a plain tuple of its fields in order
        with the three times as integer unix milliseconds and result and error
        as JSON text (the recorder's: nothing to format here, so the thread
        that writes holds the GIL for next to nothing). SQLite prints those
        times as ``iso_from_unix`` does."""
        rows = list(rows)
        if not rows:
            return 0
        iso = [_exec_values(r) for r in rows if isinstance(r, ExecutionRow)]
        unix = [r for r in rows if not isinstance(r, ExecutionRow)]
        with self._tx():
            live = {r["id"] for r in self._rows("SELECT id FROM scripts")}
            before = self._db.totalchanges()
            for sql, batch in ((_EXEC_INSERT, iso), (_EXEC_INSERT_UNIX_MS, unix)):
                kept = [v for v in batch if v[1] in live]
                if kept:
                    self._db.executemany(sql, kept)
            return int(self._db.totalchanges() - before)

    def list_executions(
        self,
        script_id: int,
        limit: int = 50,
        before: str | None = None,
        status: str | None = None,
        since: str | None = None,
        function: str | None = None,
    ) -> list[ExecutionRow]:
        """A script's records, newest first; ``before`` (an ``received_at``)
        pages back in time, ``since`` (one too) stops there, ``status`` and
        ``function`` keep only the records of that status and function."""
        sql = "SELECT * FROM executions WHERE script_id=?"
        args: tuple[Any, ...] = (script_id,)
        for clause, value in (
            (" AND received_at < ?", before),
            (" AND received_at >= ?", since),
            (" AND status = ?", status),
            (" AND function = ?", function),
        ):
            if value is not None:
                sql += clause
                args = (*args, value)
        with self._lock:
            rows = self._rows(
                sql + " ORDER BY received_at DESC, rowid DESC LIMIT ?", (*args, limit)
            )
        return [_execution(r) for r in rows]

    def get_execution(self, execution_id: str) -> ExecutionRow | None:
        with self._lock:
            row = self._one("SELECT * FROM executions WHERE id=?", (execution_id,))
        return _execution(row) if row else None

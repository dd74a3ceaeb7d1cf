"""The store's SQL for retention and size: pruning execution records and finished
emails by age and by count, in batches, and what the store weighs.

``RetentionStore`` is a mixin of ``daemon.store.database.Store`` like ``KeysStore``.
Each prune method deletes at most `batch` rows in one short transaction and returns
how many it deleted: the caller (daemon/account/retention_loop.py) repeats it until
fewer come back, in a thread, so the gateway's record writer waits for one batch at
most, never for a whole pass. Every query walks an index: executions by
(script_id, received_at) (rowid breaks ties, in the order records were written).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daemon.store.parts import StoreParts

__all__ = ["RetentionStore", "StoreSize"]

# An email that is still queued or retrying is never pruned: only sent or failed ones.
_FINISHED = "(sent_at IS NOT NULL OR next_attempt_at IS NULL)"
# An async call that is over: neither waiting nor running, with no callback still due.
_CALL_OVER = (
    "status NOT IN ('queued', 'running') "
    "AND (callback_state IS NULL OR callback_state != 'pending')"
)


@dataclass(frozen=True)
class StoreSize:
    """The store's file sizes (bytes) and what its largest tables hold."""

    database_bytes: int  # the database file: its pages, used and free
    wal_bytes: int  # the write-ahead log beside it (folded back at checkpoints)
    free_bytes: int  # pages freed by deletes: reused before the file grows again
    executions: int
    outbox: int

    @property
    def total_bytes(self) -> int:
        return self.database_bytes + self.wal_bytes

    def to_json(self) -> dict[str, Any]:
        return {
            "total_bytes": self.total_bytes,
            "database_bytes": self.database_bytes,
            "wal_bytes": self.wal_bytes,
            "free_bytes": self.free_bytes,
            "execution_records": self.executions,
            "outbox_messages": self.outbox,
        }


class RetentionStore(StoreParts):
    """Pruning and size; mixed into ``daemon.store.database.Store``."""

    path: Path

    def script_ids(self) -> list[int]:
        with self._lock:
            return [int(r["id"]) for r in self._rows("SELECT id FROM scripts ORDER BY id")]

    def prune_executions_before(self, script_id: int, cutoff: str, batch: int) -> int:
        """Delete up to `batch` of the script's oldest records received before
        `cutoff` (the store's ISO text); how many went."""
        with self._tx():
            self._db.execute(
                "DELETE FROM executions WHERE rowid IN (SELECT rowid FROM executions "
                "WHERE script_id = ?1 AND received_at < ?2 ORDER BY received_at LIMIT ?3)",
                (script_id, cutoff, batch),
            )
            return int(self._db.changes())

    def prune_executions_over(self, script_id: int, keep: int, batch: int) -> int:
        """Delete up to `batch` of the script's oldest records beyond its newest `keep`."""
        with self._tx():
            edge = self._one(
                "SELECT received_at AS at, rowid AS id FROM executions WHERE script_id = ? "
                "ORDER BY received_at DESC, rowid DESC LIMIT 1 OFFSET ?",
                (script_id, keep),
            )
            if not edge:
                return 0
            self._db.execute(
                "DELETE FROM executions WHERE rowid IN (SELECT rowid FROM executions "
                "WHERE script_id = ?1 AND (received_at < ?2 OR (received_at = ?2 AND "
                "rowid <= ?3)) ORDER BY received_at, rowid LIMIT ?4)",
                (script_id, edge["at"], edge["id"], batch),
            )
            return int(self._db.changes())

    def prune_async_calls_before(self, script_id: int, cutoff_ms: int, batch: int) -> int:
        """Delete up to `batch` of the script's finished async calls received before
        `cutoff_ms` (unix ms), with their callback deliveries; how many went. A queued
        or running call, or one whose callback is still due, stays whatever its age."""
        with self._tx():
            self._db.execute(
                "DELETE FROM async_calls WHERE rowid IN (SELECT rowid FROM async_calls "
                f"WHERE script_id = ?1 AND {_CALL_OVER} AND received_ms < ?2 "
                "ORDER BY received_ms LIMIT ?3)",
                (script_id, cutoff_ms, batch),
            )
            return int(self._db.changes())

    def prune_async_calls_over(self, script_id: int, keep: int, batch: int) -> int:
        """Delete up to `batch` of the script's oldest finished async calls beyond its
        newest `keep` calls (unfinished ones count toward `keep` but always stay)."""
        with self._tx():
            edge = self._one(
                "SELECT received_ms AS at, rowid AS id FROM async_calls WHERE script_id = ? "
                "ORDER BY received_ms DESC, rowid DESC LIMIT 1 OFFSET ?",
                (script_id, keep),
            )
            if not edge:
                return 0
            self._db.execute(
                "DELETE FROM async_calls WHERE rowid IN (SELECT rowid FROM async_calls "
                f"WHERE script_id = ?1 AND {_CALL_OVER} AND (received_ms < ?2 OR "
                "(received_ms = ?2 AND rowid <= ?3)) ORDER BY received_ms, rowid LIMIT ?4)",
                (script_id, edge["at"], edge["id"], batch),
            )
            return int(self._db.changes())

    def prune_outbox(self, cutoff: str, keep_per_script: int, batch: int) -> int:
        """Delete up to `batch` sent or failed emails created before `cutoff`, or
        beyond the newest `keep_per_script` finished ones about the same script
        (account-wide emails count as one script)."""
        with self._tx():
            doomed = [
                r["id"]
                for r in self._rows(
                    f"SELECT id FROM outbox WHERE {_FINISHED} AND created_at < ? "
                    "ORDER BY id LIMIT ?",
                    (cutoff, batch),
                )
            ]
            for group in self._rows("SELECT DISTINCT script FROM outbox"):
                if len(doomed) >= batch:
                    break
                doomed += self._outbox_over(group["script"], keep_per_script, batch - len(doomed))
            self._db.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in doomed])
            return len(set(doomed))

    def _outbox_over(self, script: str | None, keep: int, limit: int) -> list[int]:
        edge = self._one(
            f"SELECT id FROM outbox WHERE script IS ? AND {_FINISHED} "
            "ORDER BY id DESC LIMIT 1 OFFSET ?",
            (script, keep),
        )
        if not edge:
            return []
        rows = self._rows(
            f"SELECT id FROM outbox WHERE script IS ? AND {_FINISHED} AND id <= ? "
            "ORDER BY id LIMIT ?",
            (script, edge["id"], limit),
        )
        return [int(r["id"]) for r in rows]

    def outbox_backlog(self) -> int:
        """Emails waiting to be sent: queued or retrying."""
        with self._lock:
            row = self._one(
                "SELECT count(*) AS n FROM outbox WHERE sent_at IS NULL "
                "AND next_attempt_at IS NOT NULL"
            )
        return int(row.get("n") or 0)

    def store_size(self, count_rows: bool = True) -> StoreSize:
        """The files' sizes; with `count_rows`, the tables' rows too (a walk of their
        indexes: for `scriptctl account`, not for every scrape)."""
        with self._lock:
            page = int(self._one("PRAGMA page_size")["page_size"])
            pages = int(self._one("PRAGMA page_count")["page_count"])
            free = int(self._one("PRAGMA freelist_count")["freelist_count"])
            executions = outbox = 0
            if count_rows:
                executions = int(self._one("SELECT count(*) AS n FROM executions")["n"])
                outbox = int(self._one("SELECT count(*) AS n FROM outbox")["n"])
        return StoreSize(pages * page, _size(Path(f"{self.path}-wal")), free * page,
                         executions, outbox)  # fmt: skip


def _size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0

"""The store's SQL for asynchronous calls: the queue (`async_calls`), the callback
deliveries of each call, and the per-script callback secret (sealed with the store's
SecretBox like integration secrets).

``AsyncCallsStore`` is a mixin of ``daemon.store.database.Store``. A call moves
queued -> running -> an end status (daemon/core/async_calls.py); only a queued call
starts an attempt or is canceled, each checked in its UPDATE's WHERE, so the worker
loop and a DELETE never both win.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from typing import Any

import apsw
import orjson

from daemon.core.async_calls import (
    CANCELED,
    DEAD,
    EXPIRED,
    QUEUED,
    RUNNING,
    AsyncCall,
    Delivery,
    NewAsyncCall,
)
from daemon.core.models import now_iso
from daemon.store.parts import StoreParts
from daemon.store.secret_box import SecretBox

__all__ = ["AsyncCallsStore"]

_SELECT = "SELECT c.*, s.name AS script FROM async_calls c JOIN scripts s ON s.id = c.script_id"
# Columns an attempt's end may set (names written by code only, never by a request).
_END_COLUMNS = frozenset(("status", "dead", "next_ms", "ended_ms", "result_json",
                          "error_json", "callback_state", "callback_next_ms"))  # fmt: skip
CALLBACK_SECRET_PREFIX = "whsec_"


def _call(row: dict[str, Any], deliveries: tuple[Delivery, ...] = ()) -> AsyncCall:
    return AsyncCall(
        id=row["id"], script_id=row["script_id"], script=row["script"],
        function=row["function"], key_name=row["key_name"], body=bytes(row["body"]),
        details=bool(row["details"]), status=row["status"], dead=bool(row["dead"]),
        idempotency_key=row["idempotency_key"], callback_url=row["callback_url"],
        max_retries=row["max_retries"], max_age_ms=row["max_age_ms"],
        attempts=row["attempts"], received_ms=row["received_ms"], next_ms=row["next_ms"],
        started_ms=row["started_ms"], ended_ms=row["ended_ms"],
        result_json=row["result_json"], error_json=row["error_json"],
        attempt_log=tuple(orjson.loads(row["attempts_json"])),
        callback_state=row["callback_state"], callback_next_ms=row["callback_next_ms"],
        callback_tries=row["callback_tries"], deliveries=deliveries,
    )  # fmt: skip


class AsyncCallsStore(StoreParts):
    """The queue of asynchronous calls; mixed into ``daemon.store.database.Store``."""

    secret_box: SecretBox

    def enqueue_async_call(self, new: NewAsyncCall, window_ms: int) -> tuple[AsyncCall, bool]:
        """Queue `new`, or, when its idempotency key was used for this script within
        `window_ms`, return that first call instead: (the call, whether it is new)."""
        with self._tx():
            if new.idempotency_key is not None:
                first = self._one(
                    "SELECT id, received_ms FROM async_calls "
                    "WHERE script_id=? AND idempotency_key=?",
                    (new.script_id, new.idempotency_key),
                )
                if first and first["received_ms"] >= new.received_ms - window_ms:
                    return self._get_call(first["id"]), False
                if first:  # past the window: the key is free again
                    self._db.execute(
                        "UPDATE async_calls SET idempotency_key=NULL WHERE id=?", (first["id"],)
                    )
            self._db.execute(
                "INSERT INTO async_calls (id, script_id, function, key_name, body, details, "
                "status, idempotency_key, callback_url, max_retries, max_age_ms, received_ms, "
                "next_ms) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (new.id, new.script_id, new.function, new.key_name, new.body, int(new.details),
                 QUEUED, new.idempotency_key, new.callback_url, new.max_retries,
                 new.max_age_ms, new.received_ms, new.received_ms),
            )  # fmt: skip
            return self._get_call(new.id), True

    def _get_call(self, call_id: str) -> AsyncCall:
        return _call(self._one(f"{_SELECT} WHERE c.id=?", (call_id,)))

    def get_async_call(self, call_id: str) -> AsyncCall | None:
        """The call with its callback deliveries, or None."""
        with self._lock:
            row = self._one(f"{_SELECT} WHERE c.id=?", (call_id,))
            if not row:
                return None
            rows = self._rows(
                "SELECT at, attempt, status_code, error, duration_ms FROM callback_deliveries "
                "WHERE call_id=? ORDER BY id",
                (call_id,),
            )
        return _call(row, tuple(Delivery(**r) for r in rows))

    def list_async_calls(
        self, script_id: int, status: str | None = None, limit: int = 50
    ) -> list[AsyncCall]:
        """Newest first; `status` one of the statuses, or "dead"."""
        where, args = "c.script_id=?", [script_id]
        if status == DEAD:
            where += " AND c.dead=1"
        elif status is not None:
            where += " AND c.status=?"
            args.append(status)  # type: ignore[arg-type]
        sql = f"{_SELECT} WHERE {where} ORDER BY c.received_ms DESC, c.id DESC LIMIT ?"
        with self._lock:
            return [_call(r) for r in self._rows(sql, (*args, limit))]

    def due_async_calls(self, now_ms: int, limit: int, skip: Iterable[str] = ()) -> list[AsyncCall]:
        """Queued calls whose next attempt is due, oldest first; none of the scripts
        named in `skip` (those whose share of workers is taken: their calls must not
        fill the batch and hold back the other scripts')."""
        names = list(skip)
        marks = ",".join("?" * len(names))
        where = f" AND s.name NOT IN ({marks})" if names else ""
        with self._lock:
            rows = self._rows(
                f"{_SELECT} WHERE c.status=? AND c.next_ms<=?{where} ORDER BY c.next_ms LIMIT ?",
                (QUEUED, now_ms, *names, limit),
            )
        return [_call(r) for r in rows]

    def expire_async_calls(self, now_ms: int) -> int:
        """Queued calls past their maximum event age end as expired dead letters (their
        callback, if any, becomes due); how many."""
        with self._tx():
            self._db.execute(
                "UPDATE async_calls SET status=?2, dead=1, ended_ms=?1, error_json=json_object("
                "'type', 'expired', 'message', 'the call waited past the script''s maximum "
                "event age of ' || (max_age_ms / 1000) || ' s without succeeding'), "
                "callback_state=CASE WHEN callback_url IS NULL THEN NULL ELSE 'pending' END, "
                "callback_next_ms=CASE WHEN callback_url IS NULL THEN NULL ELSE ?1 END "
                "WHERE status=?3 AND received_ms + max_age_ms < ?1",
                (now_ms, EXPIRED, QUEUED),
            )
            return self._db.changes()

    def next_async_due_ms(self) -> int | None:
        """When the next queued call or pending callback is due (None: nothing waits)."""
        with self._lock:
            row = self._one(
                "SELECT min(t) AS t FROM (SELECT min(next_ms) AS t FROM async_calls "
                "WHERE status=? UNION ALL SELECT min(callback_next_ms) FROM async_calls "
                "WHERE callback_state='pending')",
                (QUEUED,),
            )
        return row.get("t")

    def start_async_attempt(self, call_id: str, now_ms: int) -> bool:
        """queued -> running; False when the call is no longer queued (canceled)."""
        with self._tx():
            self._db.execute(
                "UPDATE async_calls SET status=?, started_ms=coalesce(started_ms, ?) "
                "WHERE id=? AND status=?",
                (RUNNING, now_ms, call_id, QUEUED),
            )
            return self._db.changes() == 1

    def end_async_attempt(
        self, call_id: str, attempt: dict[str, Any] | None, **changes: Any
    ) -> None:
        """Write an attempt's outcome: `attempt` (appended to the attempt log, and
        counted) and the columns in `changes` (status, next_ms, result_json, ...)."""
        unknown = set(changes) - _END_COLUMNS
        if unknown:
            raise ValueError(f"not a column an attempt sets: {sorted(unknown)}")
        sets = [f"{column}=?" for column in changes]
        args: list[Any] = list(changes.values())
        if attempt is not None:
            sets += [
                "attempts=attempts+1",
                "attempts_json=json_insert(attempts_json,'$[#]',json(?))",
            ]
            args.append(orjson.dumps(attempt).decode())
        with self._tx():
            self._db.execute(f"UPDATE async_calls SET {','.join(sets)} WHERE id=?",
                             (*args, call_id))  # fmt: skip

    def cancel_async_call(self, call_id: str, now_ms: int) -> bool:
        """queued -> canceled; False when it was not queued (running or ended)."""
        with self._tx():
            self._db.execute(
                "UPDATE async_calls SET status=?, ended_ms=? WHERE id=? AND status=?",
                (CANCELED, now_ms, call_id, QUEUED),
            )
            return self._db.changes() == 1

    def requeue_running_async_calls(self) -> int:
        """At start: calls whose attempt a stopped daemon left running run again
        (at least once: that attempt is not counted)."""
        with self._tx():
            self._db.execute("UPDATE async_calls SET status=? WHERE status=?", (QUEUED, RUNNING))
            return self._db.changes()

    def retry_dead_async_call(self, call_id: str, now_ms: int) -> bool:
        """A dead letter back in the queue, as if just accepted (its attempt log kept)."""
        with self._tx():
            self._db.execute(
                "UPDATE async_calls SET status=?, dead=0, attempts=0, received_ms=?, next_ms=?, "
                "started_ms=NULL, ended_ms=NULL, result_json=NULL, error_json=NULL, "
                "callback_state=NULL, callback_next_ms=NULL, callback_tries=0 "
                "WHERE id=? AND dead=1",
                (QUEUED, now_ms, now_ms, call_id),
            )
            return self._db.changes() == 1

    def async_queue_stats(self) -> dict[str, tuple[int, int]]:
        """Per script name: (queued calls, received_ms of the oldest), for metrics."""
        with self._lock:
            rows = self._rows(
                "SELECT s.name, count(*) AS n, min(c.received_ms) AS oldest FROM async_calls c "
                "JOIN scripts s ON s.id=c.script_id WHERE c.status=? GROUP BY s.name",
                (QUEUED,),
            )
        return {r["name"]: (r["n"], r["oldest"]) for r in rows}

    # --- callbacks -------------------------------------------------------------------

    def due_callbacks(self, now_ms: int, limit: int) -> list[AsyncCall]:
        with self._lock:
            rows = self._rows(
                f"{_SELECT} WHERE c.callback_state='pending' AND c.callback_next_ms<=? "
                "ORDER BY c.callback_next_ms LIMIT ?",
                (now_ms, limit),
            )
        return [_call(r) for r in rows]

    def record_delivery(
        self, call_id: str, delivery: Delivery, state: str, next_ms: int | None
    ) -> None:
        with self._tx():
            self._db.execute(
                "INSERT INTO callback_deliveries (call_id, at, attempt, status_code, error, "
                "duration_ms) VALUES (?,?,?,?,?,?)",
                (call_id, delivery.at, delivery.attempt, delivery.status_code, delivery.error,
                 delivery.duration_ms),
            )  # fmt: skip
            self._db.execute(
                "UPDATE async_calls SET callback_state=?, callback_next_ms=?, "
                "callback_tries=callback_tries+1 WHERE id=?",
                (state, next_ms, call_id),
            )

    # --- the callback secret ---------------------------------------------------------

    def callback_secret(self, script_id: int) -> str:
        """The script's callback secret, made on first use."""
        with self._tx():
            row = self._one("SELECT sealed FROM callback_secrets WHERE script_id=?", (script_id,))
            if row:
                return self.secret_box.open(_secret_name(script_id), bytes(row["sealed"]))
            return self._new_callback_secret(script_id)

    def rotate_callback_secret(self, script_id: int) -> str:
        """A new callback secret for the script; the old one no longer signs."""
        with self._tx():
            return self._new_callback_secret(script_id)

    def _new_callback_secret(self, script_id: int) -> str:
        value = CALLBACK_SECRET_PREFIX + secrets.token_urlsafe(32)
        sealed = self.secret_box.seal(_secret_name(script_id), value)
        try:
            self._db.execute(
                "INSERT OR REPLACE INTO callback_secrets (script_id, sealed, created_at) "
                "VALUES (?,?,?)",
                (script_id, sealed, now_iso()),
            )
        except apsw.ConstraintError:
            raise LookupError(f"no script with id {script_id}") from None
        return value


def _secret_name(script_id: int) -> str:
    """The sealed value's associated data: a copy onto another script does not open."""
    return f"callback-secret:{script_id}"

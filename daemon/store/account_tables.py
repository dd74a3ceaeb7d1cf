"""The store's SQL for the account: credits, the usage ledger, the email outbox, and
event reads for `scriptctl events`.

``AccountStore`` is a mixin of ``daemon.store.database.Store`` like ``KeysStore``: its
methods share the Store's one apsw connection and lock, each one blocks and is one
transaction: never call one on the event loop.

Credits are integers in micro-credits (daemon/account/credit_rules.py); the REAL columns of the
first migration (`balance_credits`, `total_allocated`) are kept as derived copies.
`charge_usage` is the one transaction that makes the meter idempotent: an entry is
added only if it starts at or after its replica's high-water mark, and the balance
is debited by exactly the entries added.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from daemon.core.credits import Account, Charge, LedgerEntry
from daemon.core.models import Event, parse_iso
from daemon.core.outbox import Email, OutboxMessage, Status
from daemon.store.keys_table import iso_from_unix
from daemon.store.parts import StoreParts

__all__ = ["AccountStore", "ScriptUsage"]

HOUR_MS = 3_600_000
_OUTBOX_COLUMNS = (
    "id, kind, recipient, subject, body, attempts, last_error, created_at, next_attempt_at, "
    "sent_at, script, version"
)
_STATUS_SQL = {
    "sent": "sent_at IS NOT NULL",
    "failed": "sent_at IS NULL AND next_attempt_at IS NULL",
    "queued": "sent_at IS NULL AND next_attempt_at IS NOT NULL AND attempts = 0",
    "retrying": "sent_at IS NULL AND next_attempt_at IS NOT NULL AND attempts > 0",
}


@dataclass(frozen=True)
class ScriptUsage:
    """What one script spent: replica time and credits, by profile."""

    script: str
    profile: str
    replica_ms: int
    amount: int  # micro-credits
    replicas: int  # distinct replica ids
    first_ms: int  # start of the first period counted
    last_ms: int  # end of the last period counted


def _unix(text: str | None) -> float | None:
    return None if text is None else parse_iso(text).timestamp()


def _message(row: dict[str, Any]) -> OutboxMessage:
    return OutboxMessage(
        id=row["id"], kind=row["kind"], recipient=row["recipient"], subject=row["subject"],
        body=row["body"], attempts=row["attempts"], last_error=row["last_error"],
        created_at=_unix(row["created_at"]) or 0.0, next_attempt_at=_unix(row["next_attempt_at"]),
        sent_at=_unix(row["sent_at"]), script=row["script"], version=row["version"],
    )  # fmt: skip


class AccountStore(StoreParts):
    """Credits, ledger, outbox and event reads; mixed into ``daemon.store.database.Store``."""

    # --- the account ---------------------------------------------------------------

    def ensure_account(self, allocation: int, now: str) -> Account:
        """The account, created with `allocation` (micro-credits) the first time."""
        with self._tx():
            self._db.execute(
                "INSERT INTO account (id, balance_credits, total_allocated, updated_at, "
                "allocation_micro, balance_micro) VALUES (1, ?1 / 1e6, ?1 / 1e6, ?2, ?1, ?1) "
                "ON CONFLICT(id) DO NOTHING",
                (allocation, now),
            )
            return self._account()

    def get_account(self) -> Account:
        with self._lock:
            return self._account()

    def _account(self) -> Account:
        row = self._one("SELECT allocation_micro, balance_micro FROM account WHERE id=1")
        if not row:
            return Account(0, 0)
        return Account(int(row["allocation_micro"]), int(row["balance_micro"]))

    def set_allocation(self, allocation: int, reset: bool, now: str) -> tuple[Account, Account]:
        """Set the total allocation. The balance moves by the same amount (what was
        spent stays spent), or becomes the allocation with `reset`. (before, after)."""
        with self._tx():
            before = self._account()
            balance = allocation if reset else before.balance + allocation - before.allocation
            self._db.execute(
                "INSERT INTO account (id, balance_credits, total_allocated, updated_at, "
                "allocation_micro, balance_micro) VALUES (1, ?2 / 1e6, ?1 / 1e6, ?3, ?1, ?2) "
                "ON CONFLICT(id) DO UPDATE SET allocation_micro = ?1, balance_micro = ?2, "
                "total_allocated = ?1 / 1e6, balance_credits = ?2 / 1e6, updated_at = ?3",
                (allocation, balance, now),
            )
            return before, self._account()

    # --- the usage ledger (daemon.account.credit_rules.Ledger) ----------------------------------

    def usage_high_water(self, replica_id: str) -> int | None:
        with self._lock:
            row = self._one(
                "SELECT MAX(period_end_ms) AS m FROM credit_usage WHERE replica_id=?",
                (replica_id,),
            )
        return None if not row or row["m"] is None else int(row["m"])

    def charge_usage(self, entries: Sequence[LedgerEntry], now: str) -> Charge:
        """Add the entries not charged yet and debit the balance by them, atomically."""
        with self._tx():
            before, total = self._account(), 0
            for e in entries:
                mark = self._one(
                    "SELECT MAX(period_end_ms) AS m FROM credit_usage WHERE replica_id=?",
                    (e.replica_id,),
                ).get("m")
                if mark is not None and e.period_start_ms < mark:
                    continue  # charged already (a replay after a crash)
                self._db.execute(
                    "INSERT INTO credit_usage VALUES (?, ?, (SELECT id FROM scripts WHERE name=?), "
                    "?, ?, ?, ?, ?, ?, ?) ON CONFLICT(replica_id, hour_start_ms) DO UPDATE SET "
                    "period_end_ms = excluded.period_end_ms, "
                    "replica_ms = replica_ms + excluded.replica_ms, "
                    "amount_micro = amount_micro + excluded.amount_micro",
                    (e.replica_id, e.hour_start_ms, e.script, e.script, e.version, e.profile,
                     e.period_start_ms, e.period_end_ms, e.replica_ms, e.amount),
                )  # fmt: skip
                total += e.amount
            if total:
                self._db.execute(
                    "UPDATE account SET balance_micro = balance_micro - ?1, "
                    "balance_credits = (balance_micro - ?1) / 1e6, updated_at = ?2 WHERE id=1",
                    (total, now),
                )
            return Charge(before, self._account())

    def usage_by_script(self, since_ms: int = 0) -> list[ScriptUsage]:
        """Spending per script and profile from the wall-clock hour holding `since_ms`
        (the ledger's grain is one row per replica per hour), biggest first."""
        with self._lock:
            rows = self._rows(
                "SELECT script_name, profile, SUM(replica_ms) AS ms, SUM(amount_micro) AS amount, "
                "COUNT(DISTINCT replica_id) AS n, MIN(hour_start_ms) AS first, "
                "MAX(period_end_ms) AS last FROM credit_usage WHERE hour_start_ms >= ? "
                "GROUP BY script_name, profile ORDER BY amount DESC, script_name",
                (since_ms - since_ms % HOUR_MS,),
            )
        return [
            ScriptUsage(r["script_name"], r["profile"], int(r["ms"]), int(r["amount"]),
                        int(r["n"]), int(r["first"]), int(r["last"]))
            for r in rows
        ]  # fmt: skip

    # --- the outbox (daemon.account.email_messages.Outbox) ----------------------------

    def outbox_add(self, email: Email, recipient: str, now: float) -> int:
        at = iso_from_unix(now)
        with self._tx():
            self._db.execute(
                "INSERT INTO outbox (created_at, kind, recipient, subject, body, "
                "next_attempt_at, script, version) VALUES (?,?,?,?,?,?,?,?)",
                (at, email.kind, recipient, email.subject, email.body, at, email.script,
                 email.version),
            )  # fmt: skip
            return int(self._db.last_insert_rowid())

    def outbox_due(self, now: float, limit: int) -> list[OutboxMessage]:
        with self._lock:
            rows = self._rows(
                f"SELECT {_OUTBOX_COLUMNS} FROM outbox WHERE sent_at IS NULL "
                "AND next_attempt_at IS NOT NULL AND next_attempt_at <= ? ORDER BY id LIMIT ?",
                (iso_from_unix(now), limit),
            )
        return [_message(r) for r in rows]

    def outbox_mark_sent(self, id: int, attempts: int, now: float) -> None:
        with self._tx():
            self._db.execute(
                "UPDATE outbox SET attempts=?, sent_at=?, next_attempt_at=NULL WHERE id=?",
                (attempts, iso_from_unix(now), id),
            )

    def outbox_mark_retry(self, id: int, attempts: int, error: str, next_at: float) -> None:
        with self._tx():
            self._db.execute(
                "UPDATE outbox SET attempts=?, last_error=?, next_attempt_at=? WHERE id=?",
                (attempts, error, iso_from_unix(next_at), id),
            )

    def outbox_mark_failed(self, id: int, attempts: int, error: str) -> None:
        with self._tx():
            self._db.execute(
                "UPDATE outbox SET attempts=?, last_error=?, next_attempt_at=NULL WHERE id=?",
                (attempts, error, id),
            )

    def list_outbox(
        self, limit: int = 50, status: Status | None = None, script: str | None = None
    ) -> list[OutboxMessage]:
        """Newest first; `status` and `script` filter."""
        where, args = ["1=1"], []
        if status is not None:
            where.append(_STATUS_SQL[status])
        if script is not None:
            where.append("script = ?")
            args.append(script)
        with self._lock:
            rows = self._rows(
                f"SELECT {_OUTBOX_COLUMNS} FROM outbox WHERE {' AND '.join(where)} "
                "ORDER BY id DESC LIMIT ?",
                (*args, limit),
            )
        return [_message(r) for r in rows]

    # --- events --------------------------------------------------------------------

    def recent_events(
        self, script_id: int, kind: str | None = None, limit: int = 100
    ) -> list[Event]:
        """The newest `limit` events of a script (of one kind if given), oldest first."""
        sql = "SELECT * FROM events WHERE script_id=?"
        args: tuple[Any, ...] = (script_id,)
        if kind is not None:
            sql += " AND kind=?"
            args = (script_id, kind)
        with self._lock:
            rows = self._rows(f"{sql} ORDER BY id DESC LIMIT ?", (*args, limit))
        return [
            Event(r["id"], r["script_id"], r["at"], r["kind"], r["actor"],
                  orjson.loads(r["detail_json"]))
            for r in reversed(rows)
        ]  # fmt: skip

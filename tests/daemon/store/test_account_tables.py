"""The store's account SQL: allocation, the ledger under the real Meter, the outbox
under the real Mailer, and event reads."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest

from daemon.account.credit_rules import Meter, RunningReplica, accrued, entries_for
from daemon.account.email_messages import Backoff, Mailer, ScriptRef, SendError, compose
from daemon.core.credits import HOUR_MS, Account, Charge, LedgerEntry, to_micro
from daemon.core.models import Event, now_iso
from daemon.core.outbox import OutboxMessage
from daemon.store.database import Store
from tests.daemon.store.test_database import a_script

T0 = 1_800_000_000_000 - 1_000
RATE = to_micro("0.07698")


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "db")


class StoreLedger:
    """The adapter daemon/account/metering_loop.py uses, without the threads."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def high_water(self, replica_id: str) -> int | None:
        return self.store.usage_high_water(replica_id)

    async def charge(self, entries: Sequence[LedgerEntry]) -> Charge:
        return self.store.charge_usage(entries, now_iso())


def test_account_is_created_once_and_allocation_moves_the_balance(store: Store) -> None:
    assert store.ensure_account(to_micro(100), now_iso()) == Account(to_micro(100), to_micro(100))
    assert store.ensure_account(to_micro(5), now_iso()).allocation == to_micro(100)
    store.charge_usage(entries_for(RunningReplica("r", "s", 1, "p", RATE, T0), T0, T0 + HOUR_MS),
                       now_iso())  # fmt: skip
    spent = RATE
    before, after = store.set_allocation(to_micro(150), False, now_iso())
    assert before.balance == to_micro(100) - spent
    assert after == Account(to_micro(150), to_micro(150) - spent)
    _, reset = store.set_allocation(to_micro(10), True, now_iso())
    assert reset == Account(to_micro(10), to_micro(10))


async def test_meter_against_the_store(store: Store) -> None:
    store.ensure_account(to_micro(1), now_iso())
    clock = [T0]
    r1 = RunningReplica("run1:a", "alpha", 1, "1vcpu-2gb", RATE, T0)
    r2 = RunningReplica("run1:b", "beta", 2, "4vcpu-16gb", to_micro("0.288"), T0 + 500)
    meter = Meter(lambda: _listed([r1, r2]), StoreLedger(store), _noop, _noop,
                  clock_ms=lambda: clock[0])  # fmt: skip
    for _ in range(100):
        clock[0] += 5_000
        await meter.step()
    end = clock[0]
    usage = {u.script: u for u in store.usage_by_script()}
    assert usage["alpha"].amount == accrued(T0, end, RATE)
    assert usage["alpha"].replica_ms == end - T0
    assert usage["beta"].amount == accrued(T0 + 500, end, to_micro("0.288"))
    spent = usage["alpha"].amount + usage["beta"].amount
    assert store.get_account().balance == to_micro(1) - spent
    # A replay of a period already charged changes nothing.
    again = store.charge_usage(entries_for(r1, T0, T0 + 5_000), now_iso())
    assert again.before == again.after
    assert store.usage_by_script(since_ms=end + HOUR_MS) == []


async def _listed(rs: list[RunningReplica]) -> list[RunningReplica]:
    return rs


async def _noop(_a: Account) -> None:
    return None


class StoreOutbox:
    def __init__(self, store: Store) -> None:
        self.s = store

    async def add(self, email, recipient, now):  # type: ignore[no-untyped-def]
        return self.s.outbox_add(email, recipient, now)

    async def due(self, now, limit):  # type: ignore[no-untyped-def]
        return self.s.outbox_due(now, limit)

    async def mark_sent(self, id, attempts, now):  # type: ignore[no-untyped-def]
        self.s.outbox_mark_sent(id, attempts, now)

    async def mark_retry(self, id, attempts, error, next_at):  # type: ignore[no-untyped-def]
        self.s.outbox_mark_retry(id, attempts, error, next_at)

    async def mark_failed(self, id, attempts, error):  # type: ignore[no-untyped-def]
        self.s.outbox_mark_failed(id, attempts, error)


class FlakySender:
    def __init__(self) -> None:
        self.down = True
        self.sent: list[OutboxMessage] = []

    async def send(self, message: OutboxMessage) -> None:
        if self.down:
            raise SendError("connection refused")
        self.sent.append(message)


async def test_outbox_under_the_mailer(store: Store) -> None:
    sender = FlakySender()
    now = [1_900_000_000.0]
    m = Mailer(StoreOutbox(store), sender, "admin@example.test",
               Backoff(base_s=10, jitter=0), clock=lambda: now[0])  # fmt: skip
    account = Account(to_micro(100), to_micro(99))
    await m.enqueue(compose("deployed", [ScriptRef("alpha", 1)], account))
    await m.enqueue(compose("undeployed", [ScriptRef("beta", 3)], account))
    assert await m.drain_once() == 0
    rows = store.list_outbox()
    assert [(r.script, r.version, r.status) for r in rows] == [
        ("beta", 3, "queued"), ("alpha", 1, "retrying")
    ]  # fmt: skip
    assert [r.script for r in store.list_outbox(status="retrying")] == ["alpha"]
    assert [r.script for r in store.list_outbox(script="beta")] == ["beta"]
    now[0] += 5
    assert await m.drain_once() == 0  # not due yet: nothing tried
    sender.down = False
    now[0] += 10
    assert await m.drain_once() == 2
    assert {r.status for r in store.list_outbox()} == {"sent"}
    assert [s.recipient for s in sender.sent] == ["admin@example.test"] * 2
    await asyncio.sleep(0)


def test_recent_events_filter_and_order(store: Store) -> None:
    script = store.insert_script(a_script("demo"))
    for i in range(5):
        kind = "scaled" if i % 2 else "other"
        store.add_event(script.id, Event(0, script.id, now_iso(), kind, "autoscaler", {"i": i}))
    scaled = store.recent_events(script.id, "scaled", 10)
    assert [e.detail["i"] for e in scaled] == [1, 3]
    assert [e.detail["i"] for e in store.recent_events(script.id, None, 2)] == [3, 4]

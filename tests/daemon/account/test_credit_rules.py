"""Credits: exact arithmetic, admission, and the meter against the daemon's own ledger.

The meter tests run `daemon.account.credit_rules.Meter` over
`daemon.account.metering_loop.StoreLedger` on a real `daemon.store.database.Store` in a
temp file: the store's migrations and its one-transaction
`charge_usage` are what make the meter idempotent across restarts, so a change in that
SQL shows up here.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import apsw
import pytest
from hypothesis import given
from hypothesis import strategies as st

from daemon.account.credit_rules import (
    Meter,
    RunningReplica,
    accrued,
    admission,
    cost_between,
    entries_for,
)
from daemon.account.metering_loop import StoreLedger
from daemon.core.credits import HOUR_MS, Account, format_credits, low_threshold, to_micro
from daemon.core.models import now_iso
from daemon.store.database import Store

_OPEN: list[Store] = []


@pytest.fixture(autouse=True)
def _close_stores() -> Iterator[None]:
    yield
    while _OPEN:
        _OPEN.pop().close()


def open_store(path: Path, allocation: int | None) -> Store:
    """The daemon's store; `allocation` creates the account (None: leave it as it is)."""
    store = Store(path)
    _OPEN.append(store)
    if allocation is not None:
        store.ensure_account(allocation, now_iso())
    return store


def usage(store: Store) -> dict[str, tuple[int, int]]:
    """script -> (replica ms, micro-credits) over the whole ledger."""
    return {u.script: (u.replica_ms, u.amount) for u in store.usage_by_script()}


def raw(path: Path, sql: str) -> list[tuple[object, ...]]:
    """Read the file with a connection of its own: what is committed, not the store's view."""
    db = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        return [tuple(row) for row in db.execute(sql)]
    finally:
        db.close()


SEED_RATES = {"0.07698": 76_980, "0.15396": 153_960, "0.144": 144_000, "0.30792": 307_920,
              "0.288": 288_000}  # fmt: skip
T0 = 1_800_000_000_000 - 1_000  # one second before a wall-clock hour starts
ONE = to_micro("0.07698")


def replica(rid: str = "r1", script: str = "s", rate: int = ONE, started: int = T0):
    return RunningReplica(rid, script, 1, "1vcpu-2gb", rate, started)


@pytest.mark.parametrize(("text", "micro"), SEED_RATES.items())
def test_seed_rates_are_exact_in_micro_credits(text: str, micro: int) -> None:
    assert to_micro(text) == micro == to_micro(Decimal(text)) == to_micro(float(text))
    assert format_credits(micro) == f"{Decimal(text):.6f}"


def test_an_hour_costs_the_rate() -> None:
    assert accrued(T0, T0 + HOUR_MS, ONE) == ONE
    assert accrued(T0, T0 + 1_000, ONE) == 21  # 21.383 uc in the first second
    assert accrued(T0, T0 - 5, ONE) == 0


@given(
    rate=st.sampled_from(sorted(SEED_RATES.values())),
    cuts=st.lists(st.integers(1, 10 * HOUR_MS), min_size=1, max_size=40),
)
def test_periods_add_up_to_replica_time_times_rate(rate: int, cuts: list[int]) -> None:
    points = [T0, *sorted(T0 + c for c in cuts)]
    total = sum(cost_between(T0, a, b, rate) for a, b in itertools.pairwise(points))
    assert total == (points[-1] - T0) * rate // HOUR_MS


def test_entries_split_at_wall_clock_hours() -> None:
    es = entries_for(replica(), T0, T0 + 1_000 + HOUR_MS + 5)
    assert [e.replica_ms for e in es] == [1_000, HOUR_MS, 5]
    assert [e.hour_start_ms % HOUR_MS for e in es] == [0, 0, 0]
    assert sum(e.amount for e in es) == accrued(T0, T0 + 1_000 + HOUR_MS + 5, ONE)


@pytest.mark.parametrize(
    ("setting", "micro"),
    [("10%", to_micro(10)), ("2.5", to_micro("2.5")), (" 0.5 % ", to_micro("0.5"))],
)
def test_low_threshold_setting(setting: str, micro: int) -> None:
    assert low_threshold(to_micro(100), setting) == micro


def test_a_bad_low_balance_setting_fails_at_start(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="low_balance"):
        Harness(tmp_path / "db", [], allocation=0, low="ten")


def test_admission() -> None:
    rich = Account(allocation=to_micro(10), balance=to_micro(1))
    assert admission(rich, "1vcpu-2gb", ONE, 2).ok
    poor = Account(allocation=to_micro(10), balance=to_micro("0.1"))
    refused = admission(poor, "1vcpu-2gb", ONE, 2)
    assert not refused.ok and refused.needed == 2 * ONE
    assert "2 replicas of 1vcpu-2gb for 1 h cost 0.153960 credits" in refused.message
    assert "balance is 0.100000 of 10.000000" in refused.message
    assert admission(poor, "1vcpu-2gb", ONE, 1, hours=Decimal("1.25")).ok
    assert not admission(Account(10, 0), "1vcpu-2gb", ONE, 1).ok


class Clock:
    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


class Harness:
    def __init__(self, path: Path, replicas: list[RunningReplica], allocation: int | None,
                 low: str = "0") -> None:  # fmt: skip
        self.store = open_store(path, allocation)
        self.ledger = StoreLedger(self.store)
        self.replicas = replicas
        self.clock = Clock(T0)
        self.lows: list[Account] = []
        self.exhausted: list[Account] = []
        self.meter = Meter(self._running, self.ledger, self._low, self._exhausted,
                           low_balance=low, clock_ms=self.clock)  # fmt: skip

    async def _running(self) -> list[RunningReplica]:
        return list(self.replicas)

    async def _low(self, a: Account) -> None:
        self.lows.append(a)

    async def _exhausted(self, a: Account) -> None:
        self.exhausted.append(a)

    async def ticks(self, n: int, every_ms: int) -> None:
        for _ in range(n):
            self.clock.ms += every_ms
            await self.meter.step()

    def balance(self) -> int:
        return self.store.get_account().balance


async def test_ledger_equals_replica_seconds_times_rate(tmp_path: Path) -> None:
    two = replica("r2", "other", rate=to_micro("0.288"), started=T0 + 2_500)
    h = Harness(tmp_path / "db", [replica(), two], allocation=to_micro(100))
    await h.ticks(1500, 5_000)  # 2 h 5 min in 5 s ticks, across three wall-clock hours
    end = T0 + 1500 * 5_000
    spent = accrued(T0, end, ONE) + accrued(two.started_ms, end, two.rate)
    spent_by = usage(h.store)
    assert spent_by["s"] == (end - T0, accrued(T0, end, ONE))
    assert spent_by["other"] == (end - two.started_ms, accrued(two.started_ms, end, two.rate))
    assert h.store.get_account() == Account(to_micro(100), to_micro(100) - spent)
    [(real,)] = raw(h.store.path, "SELECT balance_credits FROM account")
    assert real == pytest.approx((to_micro(100) - spent) / 1e6)
    rows = raw(h.store.path, "SELECT COUNT(*) FROM credit_usage")
    assert rows == [(4 + 3,)]  # one row per replica per wall-clock hour touched, not per tick


async def test_restart_does_not_double_count(tmp_path: Path) -> None:
    first = Harness(tmp_path / "db", [replica()], allocation=to_micro(5))
    await first.ticks(10, 5_000)
    # The daemon dies; a new one opens the same file, sees the same replica (its pool
    # adopted it) and a clock a little further on.
    second = Harness(tmp_path / "db", [replica()], allocation=None)
    second.clock.ms = first.clock.ms + 3_000
    await second.meter.step()
    await second.ticks(10, 5_000)
    assert second.balance() == to_micro(5) - accrued(T0, second.clock.ms, ONE)
    assert usage(second.store)["s"][0] == second.clock.ms - T0


async def test_a_replayed_charge_is_ignored(tmp_path: Path) -> None:
    store = open_store(tmp_path / "db", to_micro(1))
    ledger = StoreLedger(store)
    entries = entries_for(replica(), T0, T0 + 60_000)
    first = await ledger.charge(entries)
    again = await ledger.charge(entries)  # committed, but the caller never heard back
    assert first.after == again.before == again.after
    assert store.get_account().balance == to_micro(1) - accrued(T0, T0 + 60_000, ONE)
    assert await ledger.high_water(entries[-1].replica_id) == T0 + 60_000


async def test_settle_charges_up_to_the_stop(tmp_path: Path) -> None:
    h = Harness(tmp_path / "db", [replica()], allocation=to_micro(1))
    await h.ticks(3, 5_000)
    h.replicas.clear()
    await h.meter.settle(replica(), T0 + 17_250)
    await h.meter.settle(replica(), T0 + 17_250)  # twice: still once
    await h.ticks(3, 5_000)
    assert h.balance() == to_micro(1) - accrued(T0, T0 + 17_250, ONE)


async def test_settle_before_the_pool_unlists_the_replica(tmp_path: Path) -> None:
    h = Harness(tmp_path / "db", [replica()], allocation=to_micro(1))
    await h.ticks(2, 5_000)
    await h.meter.settle(replica(), T0 + 12_000)  # still listed by running() for a while
    await h.ticks(2, 5_000)
    h.replicas.clear()
    await h.ticks(1, 5_000)
    assert h.balance() == to_micro(1) - accrued(T0, T0 + 12_000, ONE)


async def test_clock_going_back_charges_nothing(tmp_path: Path) -> None:
    h = Harness(tmp_path / "db", [replica()], allocation=to_micro(1))
    await h.ticks(2, 5_000)
    h.clock.ms -= 60_000
    assert await h.meter.step() is None
    assert h.balance() == to_micro(1) - accrued(T0, T0 + 10_000, ONE)


async def test_low_balance_then_exhausted_fire_once_each(tmp_path: Path) -> None:
    # 4 replicas of 0.288 credits/h burn 0.32 uc/ms: 0.02 credits last about 62.5 s.
    rs = [replica(f"r{i}", rate=to_micro("0.288")) for i in range(4)]
    h = Harness(tmp_path / "db", rs, allocation=to_micro("0.02"), low="50%")
    await h.ticks(6, 5_000)
    assert h.lows == [] and h.exhausted == []
    await h.ticks(2, 5_000)  # crosses 0.01 at 31.25 s
    assert len(h.lows) == 1 and 0 < h.lows[0].balance <= to_micro("0.01")
    await h.ticks(10, 5_000)
    assert len(h.lows) == 1 and len(h.exhausted) == 1
    assert h.exhausted[0].balance <= 0 and h.exhausted[0].allocation == to_micro("0.02")
    h.replicas.clear()  # the callback's undeploy stopped them
    await h.ticks(3, 5_000)
    assert len(h.exhausted) == 1


async def test_exhausted_again_after_a_restart_if_still_running(tmp_path: Path) -> None:
    h = Harness(tmp_path / "db", [replica()], allocation=0)
    await h.ticks(2, 5_000)
    assert len(h.exhausted) == 1
    again = Harness(tmp_path / "db", [replica()], allocation=None)
    again.clock.ms = h.clock.ms
    await again.ticks(1, 5_000)
    assert len(again.exhausted) == 1


async def test_run_loop_ticks_and_cancels(tmp_path: Path) -> None:
    h = Harness(tmp_path / "db", [replica()], allocation=to_micro(1))
    h.meter._interval_s = 0.01
    h.clock.ms += 1_000
    task = asyncio.create_task(h.meter.run())
    deadline = time.monotonic() + 10  # the charge runs in a thread: wait for it, not a guess
    while h.balance() == to_micro(1) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert h.balance() == to_micro(1) - accrued(T0, T0 + 1_000, ONE)

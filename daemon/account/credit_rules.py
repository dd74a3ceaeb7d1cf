"""Credits: exact arithmetic in micro-credits, deploy admission, and the metering loop.

Units. Amounts are integers in micro-credits (1 credit = 1_000_000 uc); rates are
micro-credits per replica-hour (the seed's 0.07698 credits/h is exactly 76_980 uc/h);
times are integer milliseconds since the Unix epoch. Integers never drift: a replica's
cost from its start to time t is floor(elapsed_ms x rate / 3_600_000), and each ledger
entry is the difference of two such values, so the entries of a replica add up to
exactly floor(replica-ms x rate / 3.6e6) however the time was cut (< 1 uc per replica).

No double counting. The ledger holds one row per (replica id, wall-clock hour), grown as
time passes; the newest `period_end_ms` of a replica is its high-water mark. The meter
charges only from the high-water mark on, and the store applies an entry only if it
starts at (or after) that mark, in the same transaction as the balance debit. A crash
loses at most the time since the last tick (`interval_s`), and a restart picks up where
the ledger ends. Replica ids must be unique across daemon runs.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from daemon.core.credits import (
    HOUR_MS,
    Account,
    Charge,
    LedgerEntry,
    format_credits,
    low_threshold,
)

log = logging.getLogger(__name__)


def accrued(started_ms: int, until_ms: int, rate: int) -> int:
    """What a replica started at `started_ms` has cost by `until_ms`, in micro-credits."""
    return max(0, until_ms - started_ms) * rate // HOUR_MS


def cost_between(started_ms: int, from_ms: int, to_ms: int, rate: int) -> int:
    """The cost of (from_ms, to_ms], telescoping so consecutive periods never drift."""
    return accrued(started_ms, to_ms, rate) - accrued(started_ms, from_ms, rate)


def hour_of(ms: int) -> int:
    return ms - ms % HOUR_MS


@dataclass(frozen=True)
class RunningReplica:
    replica_id: str  # unique across daemon runs
    script: str
    version: int
    profile: str
    rate: int  # micro-credits per hour (the profile's credits_per_hour via to_micro)
    started_ms: int  # when it started costing (unix ms)


class Ledger(Protocol):
    """What the meter needs from the store (see the module docstring for the rules)."""

    async def high_water(self, replica_id: str) -> int | None:
        """MAX(period_end_ms) of the replica's ledger rows, None if it has none."""
        ...

    async def charge(self, entries: Sequence[LedgerEntry]) -> Charge:
        """One transaction: add each entry whose period_start_ms >= the replica's high-water
        mark to its (replica_id, hour_start_ms) row, debit the balance by the sum of the
        ones added, return the account before and after."""
        ...


def entries_for(r: RunningReplica, from_ms: int, to_ms: int) -> list[LedgerEntry]:
    """The ledger entries for (from_ms, to_ms], one per wall-clock hour it touches."""
    out: list[LedgerEntry] = []
    start = from_ms
    while start < to_ms:
        end = min(to_ms, hour_of(start) + HOUR_MS)
        out.append(
            LedgerEntry(
                replica_id=r.replica_id, script=r.script, version=r.version, profile=r.profile,
                hour_start_ms=hour_of(start), period_start_ms=start, period_end_ms=end,
                replica_ms=end - start, amount=cost_between(r.started_ms, start, end, r.rate),
            )
        )  # fmt: skip
        start = end
    return out


@dataclass(frozen=True)
class Admission:
    ok: bool
    needed: int  # micro-credits
    message: str


def admission(
    account: Account, profile: str, rate: int, min_replicas: int, hours: Decimal = Decimal(1)
) -> Admission:
    """Can the balance pay for `min_replicas` of `profile` for `hours`? Refuse clearly if not."""
    needed = math.ceil(Decimal(min_replicas * rate) * hours)
    if account.balance >= needed:
        return Admission(True, needed, "")
    replicas = f"{min_replicas} replica{'s' if min_replicas != 1 else ''}"
    return Admission(
        False,
        needed,
        f"not enough credits: {replicas} of {profile} for {hours} h cost "
        f"{format_credits(needed)} credits, and the balance is "
        f"{format_credits(max(0, account.balance))} of {format_credits(account.allocation)}; "
        "raise it with `scriptctl account set --allocation N`",
    )


AccountCallback = Callable[[Account], Awaitable[None]]


class Meter:
    """Accrues every running replica into the ledger every `interval_s` seconds.

    `running()` lists the replicas that cost now. When a replica stops, take it out of
    that list, then call `settle(replica, ended_ms)` so its last seconds are charged too.
    `on_low(account)` fires once when the balance crosses the `low_balance` setting ("10%"
    of the allocation or "2.5" credits) downwards; `on_exhausted(account)` fires when a
    tick ends at or below zero with replicas running, once until the balance is positive
    again (the lead's callback undeploys and notifies).
    """

    def __init__(
        self,
        running: Callable[[], Awaitable[Sequence[RunningReplica]]],
        ledger: Ledger,
        on_low: AccountCallback,
        on_exhausted: AccountCallback,
        low_balance: str = "10%",
        interval_s: float = 5.0,
        clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        low_threshold(0, low_balance)  # a bad setting fails here, at start-up
        self._running = running
        self._ledger = ledger
        self._on_low = on_low
        self._on_exhausted = on_exhausted
        self._low_balance = low_balance
        self._interval_s = interval_s
        self._clock_ms = clock_ms
        self._marks: dict[str, int] = {}  # replica id -> high-water mark (unix ms)
        self._settled: set[str] = set()  # stopped, charged up to their end: never again
        self._exhausted_told = False
        self._lock = asyncio.Lock()  # step and settle must not charge the same period twice

    async def run(self) -> None:
        """Tick until cancelled; a failing tick is logged, the next one charges its time."""
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self.step()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("credits meter tick failed")

    async def step(self) -> Charge | None:
        """Charge every running replica up to now."""
        async with self._lock:
            listed = await self._running()
            # A settled id is remembered only while the pool still lists it.
            self._settled &= {r.replica_id for r in listed}
            replicas = [r for r in listed if r.replica_id not in self._settled]
            charge = await self._charge(replicas, self._clock_ms())
            live = {r.replica_id for r in replicas}
            # Gone without settle(): their last seconds are lost, and their marks not needed.
            self._marks = {k: v for k, v in self._marks.items() if k in live}
        if charge is not None:
            await self._after(charge, bool(replicas))
        return charge

    async def settle(self, replica: RunningReplica, ended_ms: int) -> Charge | None:
        """Charge a stopped replica up to when it stopped, and never again."""
        async with self._lock:
            charge = await self._charge([replica], ended_ms)
            self._marks.pop(replica.replica_id, None)
            self._settled.add(replica.replica_id)
        if charge is not None:
            await self._after(charge, False)
        return charge

    async def _charge(self, replicas: Sequence[RunningReplica], now: int) -> Charge | None:
        entries: list[LedgerEntry] = []
        for r in replicas:
            mark = await self._mark(r)
            if now > mark:  # a clock stepping back charges nothing until it catches up
                entries += entries_for(r, mark, now)
                self._marks[r.replica_id] = now
        return await self._ledger.charge(entries) if entries else None

    async def _mark(self, r: RunningReplica) -> int:
        if r.replica_id not in self._marks:
            stored = await self._ledger.high_water(r.replica_id)
            self._marks[r.replica_id] = max(r.started_ms, stored or r.started_ms)
        return self._marks[r.replica_id]

    async def _after(self, charge: Charge, running: bool) -> None:
        before, after = charge.before.balance, charge.after.balance
        if before > low_threshold(charge.after.allocation, self._low_balance) >= after > 0:
            await self._on_low(charge.after)
        if after > 0:
            self._exhausted_told = False
        elif running and not self._exhausted_told:
            self._exhausted_told = True
            await self._on_exhausted(charge.after)

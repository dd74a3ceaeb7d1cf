"""What the charts read: calls per minute by status with p50/p99 (pure bucketing over
records), and the store's queries behind them (call timings, usage samples)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from daemon.lifecycle.monitoring import call_activity, minute_calls, percentile, scaling_history
from daemon.store.database import Store
from daemon.store.keys_table import ExecutionRow
from daemon.store.usage_table import CallTiming, UsageSample
from tests.daemon.store.test_database import a_script

END = datetime(2026, 12, 5, 10, 30, 42, tzinfo=UTC)


def test_percentile_is_nearest_rank() -> None:
    assert percentile([], 50) is None
    assert percentile([7.0], 99) == 7.0
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 99), percentile(values, 100)) == (
        50.0, 99.0, 100.0,
    )  # fmt: skip


def test_minutes_cover_the_window_with_counts_and_latency() -> None:
    timings = [
        CallTiming("2026-12-05T10:30:01.000Z", "ok", 10.0),
        CallTiming("2026-12-05T10:30:02.000Z", "ok", 30.0),
        CallTiming("2026-12-05T10:30:03.000Z", "error", 20.0),
        CallTiming("2026-12-05T10:30:04.000Z", "rejected", None),  # never ran
        CallTiming("2026-12-05T10:28:59.999Z", "timeout", 1000.0),
        CallTiming("2026-12-05T09:30:00.000Z", "ok", 1.0),  # before the window
    ]
    minutes = minute_calls(timings, END, 3)
    assert [m.start.strftime("%H:%M") for m in minutes] == ["10:28", "10:29", "10:30"]
    last = minutes[-1]
    assert last.counts == {"ok": 2, "error": 1, "rejected": 1} and last.total == 4
    assert (last.p50_ms, last.p99_ms) == (20.0, 30.0)
    assert minutes[0].counts == {"timeout": 1} and minutes[0].p99_ms == 1000.0
    assert minutes[1].counts == {} and minutes[1].p50_ms is None


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "db")


def test_call_timings_are_the_newest_within_the_window_oldest_first(store: Store) -> None:
    s = store.insert_script(a_script())
    rows = [
        ExecutionRow(f"e{i}", s.id, 1, "f", None, "ok", f"2026-12-05T10:0{i}:00.000Z",
                     wall_ms=float(i))
        for i in range(5)
    ]  # fmt: skip
    store.insert_executions(rows)
    got = store.call_timings(s.id, "2026-12-05T10:01:00.000Z", 3)
    assert [t.received_at[14:16] for t in got] == ["02", "03", "04"]
    assert got[0] == CallTiming("2026-12-05T10:02:00.000Z", "ok", 2.0)


def test_usage_samples_round_trip_are_pruned_and_go_with_their_script(store: Store) -> None:
    s = store.insert_script(a_script())
    samples = [UsageSample(s.id, at, 1, 2, 1, 12.5 if at else None) for at in (0, 1000, 2000)]
    store.add_usage_samples(samples, prune_before_ms=0)
    assert store.usage_samples(s.id, 1000) == samples[1:]
    store.add_usage_samples([UsageSample(s.id, 3000, 2, 3, 3, 80.0)], prune_before_ms=1500)
    assert [x.at_ms for x in store.usage_samples(s.id, 0)] == [2000, 3000]
    store.delete_script(s.id)
    assert store.usage_samples(s.id, 0) == []


class _Context:
    """What the monitoring services use of the lifecycle's context: the store, read in
    a thread."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def db(self, fn: Any, *args: Any) -> Any:
        return await asyncio.to_thread(fn, *args)


async def test_services_read_the_last_hour_of_one_script(store: Store) -> None:
    lc: Any = SimpleNamespace(ctx=_Context(store))
    s = store.insert_script(a_script())
    other = store.insert_script(a_script("other"))
    now = END.timestamp()
    store.insert_executions([
        ExecutionRow("old", s.id, 1, "f", None, "ok", "2026-12-05T09:30:00.000Z", wall_ms=1.0),
        ExecutionRow("new", s.id, 1, "f", None, "error", "2026-12-05T10:30:01.000Z", wall_ms=4.0),
        ExecutionRow("else", other.id, 1, "f", None, "ok", "2026-12-05T10:30:01.000Z"),
    ])  # fmt: skip
    activity = await call_activity(lc, s, now=now)
    assert len(activity.minutes) == 60 and activity.total == 1 and not activity.capped
    assert activity.minutes[-1].counts == {"error": 1} and activity.minutes[-1].p99_ms == 4.0
    at = int(now * 1000)
    store.add_usage_samples(
        [
            UsageSample(s.id, at - 3_700_000, 1, 1, 1, 5.0),
            UsageSample(s.id, at - 60_000, 1, 2, 2, 90.0),
        ],
        prune_before_ms=0,
    )
    history = await scaling_history(lc, s, now=now)
    assert [x.replicas for x in history.samples] == [2]  # the older one is past the hour
    assert (history.min_replicas, history.max_replicas, history.cpu_target) == (1, 2, 75)

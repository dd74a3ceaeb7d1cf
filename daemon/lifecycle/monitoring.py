"""What a script's charts show, from the store: calls per minute by status with the
latency p50 and p99 of each minute (from the execution records), and its replicas and
CPU over time (the samples of daemon/account/usage_loop.py).

`minute_calls` is pure (records in, minutes out) so the bucketing and the percentiles
are tested without a daemon; the async functions read the store in a thread.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from daemon.core.models import Script
from daemon.lifecycle.actions import Lifecycle
from daemon.store.keys_table import iso_from_unix
from daemon.store.usage_table import CallTiming, UsageSample

__all__ = [
    "EXECUTION_STATUSES", "CallActivity", "MinuteCalls", "ScalingHistory", "call_activity",
    "minute_calls", "percentile", "scaling_history",
]  # fmt: skip

EXECUTION_STATUSES = ("ok", "error", "timeout", "oom", "crashed", "rejected")
WINDOW_MINUTES = 60  # the charts show the last hour
TIMINGS_MAX = 200_000  # the newest records a chart reads (a busy hour is cut, and says so)


@dataclass(frozen=True)
class MinuteCalls:
    """One minute of calls: its start (UTC), the calls by status, the latency."""

    start: datetime
    counts: dict[str, int]  # status -> calls received in the minute
    p50_ms: float | None  # run time percentiles of the calls that ran (None: none ran)
    p99_ms: float | None

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class CallActivity:
    minutes: list[MinuteCalls]  # every minute of the window, oldest first
    capped: bool  # more calls than TIMINGS_MAX: the oldest minutes lack some

    @property
    def total(self) -> int:
        return sum(m.total for m in self.minutes)


@dataclass(frozen=True)
class ScalingHistory:
    samples: list[UsageSample]  # oldest first
    start: datetime
    end: datetime
    min_replicas: int
    max_replicas: int
    cpu_target: int | None  # None: min = max, the target is not used


def percentile(sorted_values: list[float], p: float) -> float | None:
    """The nearest-rank percentile `p` (0-100) of values sorted ascending."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def minute_calls(timings: Iterable[CallTiming], end: datetime, minutes: int) -> list[MinuteCalls]:
    """The `minutes` whole minutes up to `end`'s (included), each with its calls."""
    last = end.replace(second=0, microsecond=0)
    starts = [last - timedelta(minutes=minutes - 1 - i) for i in range(minutes)]
    keys = {s.strftime("%Y-%m-%dT%H:%M"): i for i, s in enumerate(starts)}
    counts: list[dict[str, int]] = [{} for _ in starts]
    runs: list[list[float]] = [[] for _ in starts]
    for t in timings:
        index = keys.get(t.received_at[:16])
        if index is None:
            continue
        counts[index][t.status] = counts[index].get(t.status, 0) + 1
        if t.wall_ms is not None:
            runs[index].append(t.wall_ms)
    out = []
    for start, count, run in zip(starts, counts, runs, strict=True):
        run.sort()
        out.append(MinuteCalls(start, count, percentile(run, 50), percentile(run, 99)))
    return out


async def call_activity(
    lc: Lifecycle, script: Script, now: float | None = None, minutes: int = WINDOW_MINUTES
) -> CallActivity:
    """The script's calls per minute over the last `minutes` (up to `now`, unix s)."""
    end = datetime.fromtimestamp(time.time() if now is None else now, UTC)
    since = end.replace(second=0, microsecond=0) - timedelta(minutes=minutes - 1)
    timings = await lc.ctx.db(
        lc.ctx.store.call_timings, script.id, iso_from_unix(since.timestamp()), TIMINGS_MAX
    )
    return CallActivity(minute_calls(timings, end, minutes), len(timings) >= TIMINGS_MAX)


async def scaling_history(
    lc: Lifecycle, script: Script, now: float | None = None, minutes: int = WINDOW_MINUTES
) -> ScalingHistory:
    """The script's replica and CPU samples over the last `minutes`."""
    end = datetime.fromtimestamp(time.time() if now is None else now, UTC)
    start = end - timedelta(minutes=minutes)
    since_ms = int(start.timestamp() * 1000)
    samples = await lc.ctx.db(lc.ctx.store.usage_samples, script.id, since_ms)
    r = script.resources
    target = None if r.min_replicas == r.max_replicas else r.cpu_target
    return ScalingHistory(samples, start, end, r.min_replicas, r.max_replicas, target)

"""Gauges read from the daemon's state when Prometheus scrapes, not kept up to date
on any hot path.

Each reading is registered by the part of the daemon that owns the state, as a
callable (main.py wires them; this package imports nothing of theirs):

    readings.replicas = runner.replica_states       # on the loop: {(script, state): n}
    readings.queued_calls = runner.queued_calls     # on the loop: {script: n}
    readings.async_queue = queue.reading            # on the loop: AsyncQueueReading
    readings.store = store_readings                 # blocking: run in a thread

A reading that is not registered reads as nothing (labelled gauges) or 0 (the async
queue's depth and oldest age, until the async calls' queue registers itself). A
reading that raises is logged and left out of that scrape: a broken gauge never
takes the others down.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TypeVar

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)
T = TypeVar("T")

__all__ = ["AsyncQueueReading", "Readings", "Snapshot", "StoreReading"]


@dataclass(frozen=True)
class AsyncQueueReading:
    """The async calls' queue: calls waiting, and how long the oldest has waited."""

    depth: int = 0
    oldest_age_seconds: float = 0.0


@dataclass(frozen=True)
class StoreReading:
    """What the store holds that operators watch (read in a thread)."""

    credits_balance: float  # credits (not micro-credits)
    credits_allocation: float
    outbox_backlog: int  # emails waiting to be sent (queued or retrying)
    store_bytes: int  # the database file and its write-ahead log


Families = list[Metric]


class Readings:
    """The registered readings. `loop_families()` on the event loop, then
    `store_families()` in a thread; a `Snapshot` of both is what one scrape prints."""

    def __init__(self) -> None:
        self.replicas: Callable[[], Mapping[tuple[str, str], int]] | None = None
        self.queued_calls: Callable[[], Mapping[str, int]] | None = None
        self.async_queue: Callable[[], AsyncQueueReading] | None = None
        self.records_dropped: Callable[[], int] | None = None
        self.store: Callable[[], StoreReading] | None = None

    def loop_families(self) -> Families:
        """The readings of in-memory state: call on the event loop that owns it."""
        families: Families = []
        replicas = _read("replicas", self.replicas)
        if replicas is not None:
            gauge = GaugeMetricFamily(
                "scriptd_replicas", "Replicas of serving versions, by script and state "
                "(starting, ready, draining)", labels=["script", "state"],
            )  # fmt: skip
            for (script, state), count in sorted(replicas.items()):
                gauge.add_metric([script, state], count)
            families.append(gauge)
        queued = _read("queued calls", self.queued_calls)
        if queued is not None:
            gauge = GaugeMetricFamily(
                "scriptd_queued_calls", "Calls waiting for a free worker, by script",
                labels=["script"],
            )  # fmt: skip
            for script, count in sorted(queued.items()):
                gauge.add_metric([script], count)
            families.append(gauge)
        families.extend(self._async_queue())
        dropped = _read("dropped records", self.records_dropped)
        if dropped is not None:
            families.append(CounterMetricFamily(
                "scriptd_execution_records_dropped",
                "Execution records lost because the store fell behind", value=dropped,
            ))  # fmt: skip
        return families

    def _async_queue(self) -> Families:
        reading = _read("async queue", self.async_queue) or AsyncQueueReading()
        return [
            GaugeMetricFamily(
                "scriptd_async_queue_depth",
                "Async calls accepted and waiting to run",
                value=reading.depth,
            ),
            GaugeMetricFamily(
                "scriptd_async_queue_oldest_age_seconds",
                "How long the oldest waiting async call has waited (0: none waits)",
                value=reading.oldest_age_seconds,
            ),
        ]

    def store_families(self) -> Families:
        """The readings of the store: blocking, call in a thread."""
        reading = _read("store", self.store)
        if reading is None:
            return []
        return [
            GaugeMetricFamily(
                "scriptd_credits_balance", "Credits left in the account",
                value=reading.credits_balance,
            ),
            GaugeMetricFamily(
                "scriptd_credits_allocation", "Credits granted to the account in total",
                value=reading.credits_allocation,
            ),
            GaugeMetricFamily(
                "scriptd_outbox_backlog", "Emails in the outbox waiting to be sent "
                "(queued or retrying)", value=reading.outbox_backlog,
            ),
            GaugeMetricFamily(
                "scriptd_store_size_bytes", "Size of the store: the SQLite database and its "
                "write-ahead log", value=reading.store_bytes,
            ),
        ]  # fmt: skip


def _read(name: str, reader: Callable[[], T] | None) -> T | None:
    if reader is None:
        return None
    try:
        return reader()
    except Exception:
        log.exception("metrics: reading %s failed; left out of this scrape", name)
        return None


class Snapshot(Collector):
    """Families read for one scrape, as a collector of a registry of its own."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)

"""The metrics listener wired to the daemon's state: which callable answers each
reading of daemon/metrics/readings.py, and the listener's start from the config.

main.py calls `metric_readings` once the store, the runner and the recorder exist,
and may register more readings on what it returns (the async calls' queue:
`readings.async_queue = <callable returning an AsyncQueueReading>`), then
`serve_metrics`.
"""

from __future__ import annotations

from daemon.config.daemon_config import Config
from daemon.gateway.recorder import ExecutionRecorder
from daemon.metrics.calls import set_counting
from daemon.metrics.listener import MetricsListener
from daemon.metrics.readings import Readings, StoreReading
from daemon.serving.replica_runner import ReplicaRunner
from daemon.store.database import Store

__all__ = ["metric_readings", "serve_metrics"]

MICRO = 1_000_000


def metric_readings(
    store: Store, runner: ReplicaRunner | None, recorder: ExecutionRecorder
) -> Readings:
    readings = Readings()
    if runner is not None:
        readings.replicas = runner.replica_states
        readings.queued_calls = runner.queued_calls
    readings.records_dropped = lambda: recorder.dropped
    readings.store = lambda: store_reading(store)
    return readings


def store_reading(store: Store) -> StoreReading:
    """Blocking: the account, the outbox's backlog and the store's size."""
    account = store.get_account()
    return StoreReading(
        credits_balance=account.balance / MICRO,
        credits_allocation=account.allocation / MICRO,
        outbox_backlog=store.outbox_backlog(),
        store_bytes=store.store_size(count_rows=False).total_bytes,
    )


async def serve_metrics(config: Config, readings: Readings) -> MetricsListener | None:
    """The listener on `metrics.listen`, started; None when that is empty (off: the
    gateway then counts nothing per call either)."""
    set_counting(config.metrics_host is not None)
    if config.metrics_host is None:
        return None
    listener = MetricsListener(readings)
    await listener.start(config.metrics_host, config.metrics_port)
    return listener

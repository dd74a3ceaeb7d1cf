"""The daemon's Prometheus instruments: counters and histograms that the code paths
increment as things happen (the gauges are read at scrape time: readings.py).

Names follow Prometheus' conventions: a `scriptd_` prefix, base units (seconds,
bytes), `_total` on counters (prometheus_client adds it), and labels with few values
only: script names (each one a deployed script), functions of a script's main file,
statuses, causes. Unknown function names a caller sends are never a label: a refused
call to one counts as the function "(unknown)".

Everything here lives in one registry of scriptd's own (`REGISTRY`, with the
process's CPU, memory and file descriptors), not prometheus_client's global one.
The hot path (`observe_call`, once per call) resolves each label set once and keeps
the children: a dict lookup and three cheap increments per call.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
)

__all__ = [
    "BUILD_CACHE_HITS",
    "BUILD_CACHE_MISSES",
    "BUILD_DURATION",
    "CALLS",
    "CALL_DURATION",
    "QUEUE_WAIT",
    "REGISTRY",
    "REPLICA_START",
    "REPLICA_START_FAILURES",
    "UNKNOWN_FUNCTION",
    "WORKER_RESTARTS",
    "EgressMeter",
    "observe_call",
    "set_counting",
]

# No `_created` series beside each counter and histogram: twice the series for a start
# time Prometheus does not need (it detects counter resets itself).
disable_created_metrics()
REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)

UNKNOWN_FUNCTION = "(unknown)"
# Seconds. Calls: from a millisecond to the longest execution timeout (600 s).
CALL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
                120, 300, 600)  # fmt: skip
QUEUE_BUCKETS = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30)
START_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 20, 30, 60)
BUILD_BUCKETS = (0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1800)

CALLS = Counter(
    "scriptd_calls",
    "Calls the gateway answered, by script, function and execution status "
    "(ok, error, timeout, oom, crashed, rejected)",
    ["script", "function", "status"],
    registry=REGISTRY,
)
CALL_DURATION = Histogram(
    "scriptd_call_duration_seconds",
    "Run time of the calls that reached a worker: from sending the call to its answer",
    ["script"],
    buckets=CALL_BUCKETS,
    registry=REGISTRY,
)
QUEUE_WAIT = Histogram(
    "scriptd_call_queue_wait_seconds",
    "Time calls waited for a free worker (the script's queue)",
    ["script"],
    buckets=QUEUE_BUCKETS,
    registry=REGISTRY,
)
REPLICA_START = Histogram(
    "scriptd_replica_start_seconds",
    "Cold start: from a replica's launch to its workers ready to take calls",
    ["script"],
    buckets=START_BUCKETS,
    registry=REGISTRY,
)
REPLICA_START_FAILURES = Counter(
    "scriptd_replica_start_failures",
    "Replica starts that failed (the main file failed to load, timeout, exit)",
    ["script"],
    registry=REGISTRY,
)
WORKER_RESTARTS = Counter(
    "scriptd_worker_restarts",
    "Workers that exited while their replica served and were started again, by cause: "
    "killed (past the execution timeout), oom, crashed",
    ["script", "cause"],
    registry=REGISTRY,
)
EGRESS_REQUESTS = Counter(
    "scriptd_egress_requests",
    "Outbound requests (and opaque HTTPS tunnels) the egress proxy relayed or tried",
    ["script"],
    registry=REGISTRY,
)
EGRESS_REFUSALS = Counter(
    "scriptd_egress_refusals",
    "Outbound requests the egress proxy refused, by the rule that refused them",
    ["script", "rule"],
    registry=REGISTRY,
)
EGRESS_BYTES = Counter(
    "scriptd_egress_bytes",
    "Bytes relayed by the egress proxy: out (sent upstream) and in (received)",
    ["script", "direction"],
    registry=REGISTRY,
)
BUILD_DURATION = Histogram(
    "scriptd_build_duration_seconds",
    "Environment builds that ran (not the ones reused from the cache), by outcome",
    ["language", "outcome"],
    buckets=BUILD_BUCKETS,
    registry=REGISTRY,
)
BUILD_CACHE_HITS = Counter(
    "scriptd_build_cache_hits",
    "Deploys whose environment was already built (same interpreter and dependencies)",
    ["language"],
    registry=REGISTRY,
)
BUILD_CACHE_MISSES = Counter(
    "scriptd_build_cache_misses",
    "Deploys whose environment had to be built",
    ["language"],
    registry=REGISTRY,
)


class _CallSeries:
    """The children one (script, function, status) updates."""

    __slots__ = ("calls", "duration", "queue")

    def __init__(self, script: str, function: str, status: str) -> None:
        self.calls = CALLS.labels(script, function, status)
        self.duration = CALL_DURATION.labels(script)
        self.queue = QUEUE_WAIT.labels(script)


_SERIES: dict[tuple[str, str, str], _CallSeries] = {}
_counting = True  # set_counting(False): metrics off, the hot path counts nothing


def set_counting(on: bool) -> None:
    """Whether `observe_call` counts (main.py turns it off with the listener)."""
    global _counting
    _counting = on


def observe_call(
    script: str, function: str, status: str, queue_ms: float | None, run_ms: float | None
) -> None:
    """Count one answered call. A refused call counts, but its times only when it
    waited in the queue (a queue timeout); `function` must be a function of the script
    or UNKNOWN_FUNCTION."""
    if not _counting:
        return
    key = (script, function, status)
    series = _SERIES.get(key)
    if series is None:
        series = _SERIES[key] = _CallSeries(script, function, status)
    series.calls.inc()
    if status == "rejected":
        if queue_ms:
            series.queue.observe(queue_ms / 1000)
        return
    if queue_ms is not None:
        series.queue.observe(queue_ms / 1000)
    if run_ms is not None:
        series.duration.observe(run_ms / 1000)


class EgressMeter:
    """The egress counters of one script, resolved once per replica's channel."""

    __slots__ = ("_refusals", "bytes_in", "bytes_out", "requests", "script")

    def __init__(self, script: str) -> None:
        self.script = script
        self.requests = EGRESS_REQUESTS.labels(script)
        self.bytes_out = EGRESS_BYTES.labels(script, "out")
        self.bytes_in = EGRESS_BYTES.labels(script, "in")
        self._refusals: dict[str, Counter] = {}

    def refused(self, rule: str) -> None:
        counter = self._refusals.get(rule)
        if counter is None:
            counter = self._refusals[rule] = EGRESS_REFUSALS.labels(self.script, rule)
        counter.inc()

    def count_bytes(self, sent: int, received: int) -> None:
        if sent:
            self.bytes_out.inc(sent)
        if received:
            self.bytes_in.inc(received)

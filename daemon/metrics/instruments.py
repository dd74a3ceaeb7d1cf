"""The daemon's Prometheus instruments off the call path: counters and histograms
that replicas, builds and the egress proxy update as things happen (the per-call
metrics are calls.py's, the gauges are read at scrape time: readings.py).

Names follow Prometheus' conventions: a `scriptd_` prefix, base units (seconds,
bytes), `_total` on counters (prometheus_client adds it), and labels with few values
only: script names (each one a deployed script), causes, rules, languages.

Everything here lives in one registry of scriptd's own (`REGISTRY`, with the
process's CPU, memory and file descriptors), not prometheus_client's global one.
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
    "REGISTRY",
    "REPLICA_START",
    "REPLICA_START_FAILURES",
    "WORKER_RESTARTS",
    "EgressMeter",
]

# No `_created` series beside each counter and histogram: twice the series for a start
# time Prometheus does not need (it detects counter resets itself).
disable_created_metrics()
REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)

# Seconds.
START_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 20, 30, 60)
BUILD_BUCKETS = (0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1800)

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
EGRESS_UPSTREAMS = Counter(
    "scriptd_egress_upstream_connections",
    "Upstream connections the egress proxy got for its client connections, by source: new "
    "(a TCP and, for HTTPS, a TLS handshake) or pool (an idle one an earlier client left)",
    ["script", "source"],
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


class EgressMeter:
    """The egress counters of one script, resolved once per replica's channel."""

    __slots__ = (
        "_refusals",
        "bytes_in",
        "bytes_out",
        "requests",
        "script",
        "upstream_new",
        "upstream_pooled",
    )

    def __init__(self, script: str) -> None:
        self.script = script
        self.requests = EGRESS_REQUESTS.labels(script)
        self.bytes_out = EGRESS_BYTES.labels(script, "out")
        self.bytes_in = EGRESS_BYTES.labels(script, "in")
        self.upstream_new = EGRESS_UPSTREAMS.labels(script, "new")
        self.upstream_pooled = EGRESS_UPSTREAMS.labels(script, "pool")
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

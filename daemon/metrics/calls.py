"""The per-call metrics: counted on the event loop with plain integers and floats,
exposed at scrape time as Prometheus families.

    scriptd_calls_total{script, function, status}        counter
    scriptd_call_duration_seconds{script}                histogram (run time)
    scriptd_call_queue_wait_seconds{script}              histogram (waiting for a worker)

`observe_call` runs once per call, on the gateway's hot path (the recorder calls it):
a dict update, a bisect and two additions per histogram, about a microsecond, where
prometheus_client's own Counter and Histogram take a lock per increment (several
times that). Every call is recorded on the event loop, so these numbers are only
ever written from the loop; `call_families()` reads them on the loop too, when a
scrape begins, and the text is rendered from that copy.

Function labels are those of the script's main file: a refused call to a function
that does not exist counts as UNKNOWN_FUNCTION (names a caller makes up are never a
label).
"""

from __future__ import annotations

from bisect import bisect_left

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric

__all__ = [
    "CALL_BUCKETS",
    "QUEUE_BUCKETS",
    "UNKNOWN_FUNCTION",
    "call_families",
    "observe_call",
    "set_counting",
]

UNKNOWN_FUNCTION = "(unknown)"
# Seconds. Calls: from a millisecond to the longest execution timeout (600 s).
CALL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                30.0, 60.0, 120.0, 300.0, 600.0)  # fmt: skip
QUEUE_BUCKETS = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class _Histogram:
    """Counts per bucket (not cumulative; the last one is +Inf) and the sum."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1  # le: value <= bound
        self.total += value

    def buckets(self) -> list[tuple[str, float]]:
        """Cumulative counts by `le`, as the exposition format has them."""
        out, running = [], 0
        for bound, count in zip((*map(str, self.bounds), "+Inf"), self.counts, strict=True):
            running += count
            out.append((bound, float(running)))
        return out


class _ScriptTimes:
    __slots__ = ("duration", "queue")

    def __init__(self) -> None:
        self.duration = _Histogram(CALL_BUCKETS)
        self.queue = _Histogram(QUEUE_BUCKETS)


_COUNTS: dict[tuple[str, str, str], int] = {}
_TIMES: dict[str, _ScriptTimes] = {}
_counting = True  # set_counting(False): metrics off, the hot path counts nothing


def set_counting(on: bool) -> None:
    """Whether `observe_call` counts (off with the metrics' listener)."""
    global _counting
    _counting = on


def observe_call(
    script: str, function: str, status: str, queue_ms: float | None, run_ms: float | None
) -> None:
    """Count one answered call (on the event loop). A refused call counts, but its
    times only when it waited in the queue (a queue timeout); `function` must be a
    function of the script or UNKNOWN_FUNCTION."""
    if not _counting:
        return
    key = (script, function, status)
    _COUNTS[key] = _COUNTS.get(key, 0) + 1
    if status == "rejected" and not queue_ms:
        return
    times = _TIMES.get(script)
    if times is None:
        times = _TIMES[script] = _ScriptTimes()
    if queue_ms is not None:
        times.queue.observe(queue_ms / 1000)
    if run_ms is not None and status != "rejected":
        times.duration.observe(run_ms / 1000)


def call_families() -> list[Metric]:
    """The three families, from the counts so far (call on the event loop)."""
    calls = CounterMetricFamily(
        "scriptd_calls", "Calls the gateway answered, by script, function and execution "
        "status (ok, error, timeout, oom, crashed, rejected)",
        labels=["script", "function", "status"],
    )  # fmt: skip
    for labels, count in sorted(_COUNTS.items()):
        calls.add_metric(list(labels), count)
    duration = HistogramMetricFamily(
        "scriptd_call_duration_seconds",
        "Run time of the calls that reached a worker: from sending the call to its answer",
        labels=["script"],
    )
    queue = HistogramMetricFamily(
        "scriptd_call_queue_wait_seconds",
        "Time calls waited for a free worker (the script's queue)",
        labels=["script"],
    )
    for script, times in sorted(_TIMES.items()):
        duration.add_metric([script], times.duration.buckets(), times.duration.total)
        queue.add_metric([script], times.queue.buckets(), times.queue.total)
    return [calls, duration, queue]

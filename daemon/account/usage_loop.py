"""Samples of every serving script's replicas and CPU, for the web console's chart of
them over time (`autoscale.sample_s` apart, kept a day, in the store's usage_samples).

`UsageSampling.started(target)` is called when a version starts serving and
`stopped(script)` before its replicas stop, like the autoscaler (daemon/account/
services.py wires both). Each pass reads the replicas' cumulative cgroup CPU counters
(in a thread) and writes one row per script: the pool's replicas, the ready ones, and
their average CPU over the pass as a share of the profile's quota (the autoscaler's
measure). A script's first pass has no previous counters: its CPU is unknown (NULL).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from daemon.serving.replica import READY, Replica
from daemon.serving.target import RunTarget
from daemon.store.database import Store
from daemon.store.usage_table import UsageSample

__all__ = ["KEEP_S", "UsageSampling"]

log = logging.getLogger(__name__)
KEEP_S = 86400.0  # samples older than a day are dropped as new ones are written


class ReplicaSource(Protocol):
    def replicas(self, script: str) -> list[Replica]: ...


@dataclass
class _Watched:
    target: RunTarget
    cpu: dict[str, float] = field(default_factory=dict)  # replica -> CPU seconds last pass
    at: float | None = None  # monotonic time of the last pass


@dataclass(frozen=True)
class _Reading:
    cpu: dict[str, float]  # replica -> cumulative CPU seconds
    ready: frozenset[str]
    replicas: int


class UsageSampling:
    def __init__(
        self,
        source: ReplicaSource,
        store: Store,
        sample_s: float,
        clock: Callable[[], float] = time.time,  # the samples' times
        monotonic: Callable[[], float] = time.monotonic,  # the CPU's intervals
    ) -> None:
        self._source = source
        self._store = store
        self._sample_s = sample_s
        self._clock = clock
        self._monotonic = monotonic
        self._watched: dict[str, _Watched] = {}

    def started(self, target: RunTarget) -> None:
        self._watched[target.script] = _Watched(target)

    def stopped(self, script: str) -> None:
        self._watched.pop(script, None)

    async def run(self) -> None:
        """Sample until cancelled; a failing pass is logged and the next one tried."""
        while True:
            await asyncio.sleep(self._sample_s)
            try:
                await self.sample()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("usage sample failed")

    async def sample(self) -> list[UsageSample]:
        """One pass over the serving scripts: their samples, written to the store."""
        watched = list(self._watched.values())
        if not watched:  # an idle daemon writes nothing (rows of deleted scripts cascade)
            return []
        replicas = {w.target.script: self._source.replicas(w.target.script) for w in watched}
        readings = await asyncio.to_thread(_read_all, replicas)
        now, at_ms = self._monotonic(), int(self._clock() * 1000)
        samples = [self._sample(w, readings[w.target.script], now, at_ms) for w in watched]
        prune_before = at_ms - int(KEEP_S * 1000)
        await asyncio.to_thread(self._store.add_usage_samples, samples, prune_before)
        return samples

    def _sample(self, w: _Watched, reading: _Reading, now: float, at_ms: int) -> UsageSample:
        cpu_pct = None
        if w.at is not None and now > w.at:
            quota_s = (now - w.at) * w.target.profile.vcpus
            shares = [
                max(0.0, seconds - w.cpu[name]) / quota_s
                for name, seconds in reading.cpu.items()
                if name in reading.ready and name in w.cpu
            ]
            if shares:
                cpu_pct = round(100 * sum(shares) / len(shares), 2)
        w.cpu, w.at = reading.cpu, now
        t = w.target
        return UsageSample(t.script_id, at_ms, t.version, reading.replicas, len(reading.ready),
                           cpu_pct)  # fmt: skip


def _read_all(replicas: dict[str, list[Replica]]) -> dict[str, _Reading]:
    """Each script's replicas' CPU counters (reads their cgroups' files)."""
    return {script: _read(found) for script, found in replicas.items()}


def _read(replicas: list[Replica]) -> _Reading:
    cpu = {}
    for r in replicas:
        usage = r.usage()
        cpu[r.name] = usage.cpu_seconds if usage is not None else 0.0
    ready = frozenset(r.name for r in replicas if r.state == READY)
    return _Reading(cpu, ready, len(replicas))

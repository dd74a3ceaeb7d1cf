"""The autoscaler: a pure decision from measurements to a replica count, and a thin loop.

`decide(measurement, state, policy)` holds every rule and touches nothing; `Autoscaler`
turns cumulative cgroup CPU counters into utilizations once per tick, calls `decide`,
and hands the result to callables the pool provides. Two signals can scale a script up:

- "cpu": the average utilization of the ready replicas (CPU-seconds over the tick divided
  by tick seconds x the profile's actual vCPUs) against the target. The replicas needed
  are ceil(ready x average / target), the Kubernetes HPA rule; nothing changes while
  average / target is within the tolerance (+-10 %).
- "queue": calls waited longer than `queue_wait_s`. CPU misses scripts that wait on I/O
  and replicas still cold, so we scale to what the queue implies: enough replicas for
  every call in flight or waiting to have a worker, ceil((in_flight + queued) / workers
  per replica), and always at least one more than now. Jumping there in one tick is
  what gets a saturated script to max within a tick or two.

Up is immediate; down goes only to the highest recommendation of the stabilisation
window, so a dip in load never removes a replica that the next burst needs.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

log = logging.getLogger(__name__)

Reason = Literal["cpu", "queue", "hold", "stabilising", "at-max", "warming", "bounds", "fixed"]


@dataclass(frozen=True)
class Policy:
    """One script's scaling settings (resources) and the daemon's autoscaler config."""

    min_replicas: int
    max_replicas: int
    target: float  # utilization target as a fraction of the quota: cpu_target 75 -> 0.75
    tolerance: float = 0.10  # |average / target - 1| within this: hold
    stabilisation_s: float = 300.0  # scale down only to the highest recommendation this old
    queue_wait_s: float = 1.0  # a call waiting longer than this fires the queue signal

    @classmethod
    def from_percent(
        cls, min_replicas: int, max_replicas: int, cpu_target: int, **config: float
    ) -> Policy:
        return cls(min_replicas, max_replicas, cpu_target / 100.0, **config)

    @property
    def fixed(self) -> bool:
        return self.min_replicas == self.max_replicas

    def clamp(self, n: int) -> int:
        return max(self.min_replicas, min(self.max_replicas, n))


@dataclass(frozen=True)
class Measurement:
    """What one tick saw. `at` is monotonic seconds (only differences matter)."""

    at: float
    replicas: int  # the count the pool is set to: ready + starting
    utilizations: tuple[float, ...]  # one per ready replica measured over the tick; 1.0 = quota
    ready: int | None = None  # ready replicas; None = len(utilizations)
    queue_wait_s: float = 0.0  # longest wait of a call queued during the tick
    queued: int = 0  # calls waiting for a worker now
    in_flight: int = 0  # calls running now
    workers_per_replica: int = 1

    @property
    def ready_count(self) -> int:
        return len(self.utilizations) if self.ready is None else self.ready

    @property
    def average(self) -> float | None:
        if not self.utilizations:
            return None
        return sum(self.utilizations) / len(self.utilizations)


@dataclass(frozen=True)
class ScalerState:
    """Recommendations (at, replicas) still inside the stabilisation window."""

    recommendations: tuple[tuple[float, int], ...] = ()

    @classmethod
    def starting_at(cls, at: float, replicas: int) -> ScalerState:
        """A window that remembers the count we started with, so nothing shrinks at once."""
        return cls(((at, replicas),))


@dataclass(frozen=True)
class Decision:
    current: int
    desired: int
    reason: Reason
    recommendation: int  # what the signals asked for, clamped, before stabilisation
    utilization: float | None  # average over the ready replicas, 1.0 = quota
    target: float
    queue_wait_s: float
    queued: int
    in_flight: int

    @property
    def scales(self) -> bool:
        return self.desired != self.current

    def to_event(self) -> dict[str, Any]:
        """The detail of a "scaled" event: the inputs and the outcome."""
        util = None if self.utilization is None else round(self.utilization * 100, 1)
        return {
            "from": self.current,
            "to": self.desired,
            "reason": self.reason,
            "utilization_pct": util,
            "target_pct": round(self.target * 100, 1),
            "queue_wait_s": round(self.queue_wait_s, 3),
            "queued": self.queued,
            "in_flight": self.in_flight,
            "recommendation": self.recommendation,
        }


def decide(m: Measurement, state: ScalerState, policy: Policy) -> tuple[Decision, ScalerState]:
    """The replica count for the next tick, why, and the window to carry forward."""
    held = _fixed_or_bounds(m, policy)
    if held is not None:
        return _decision(m, policy, held[0], held[0], held[1]), state
    raw, reason = _recommend(m, policy)
    if m.ready_count < m.replicas and raw <= m.replicas:
        # Capacity is still starting and its load is not measured yet: only a signal
        # asking for more than is already coming changes anything.
        return _decision(m, policy, m.replicas, m.replicas, "warming"), state
    rec = policy.clamp(raw)
    window = _window(state, m.at, rec, policy)
    if rec > m.replicas:
        return _decision(m, policy, rec, rec, reason), window
    if rec == m.replicas:
        why: Reason = "at-max" if raw > rec else "hold"
        return _decision(m, policy, rec, rec, why), window
    stable = max(r for _, r in window.recommendations)
    if stable < m.replicas:
        return _decision(m, policy, stable, rec, "cpu"), window
    return _decision(m, policy, m.replicas, rec, "stabilising"), window


def _fixed_or_bounds(m: Measurement, policy: Policy) -> tuple[int, Reason] | None:
    if policy.clamp(m.replicas) != m.replicas:
        return policy.clamp(m.replicas), "bounds"
    if policy.fixed:
        return m.replicas, "fixed"
    return None


def _recommend(m: Measurement, policy: Policy) -> tuple[int, Reason]:
    cpu = _cpu_recommendation(m, policy)
    if m.queue_wait_s > policy.queue_wait_s:
        queue = math.ceil((m.in_flight + m.queued) / max(1, m.workers_per_replica))
        if m.ready_count >= m.replicas:
            # At least one more; not while replicas start, or each tick would add another.
            queue = max(queue, m.replicas + 1)
        if queue > cpu:
            return queue, "queue"
    return cpu, "cpu"


def _cpu_recommendation(m: Measurement, policy: Policy) -> int:
    average = m.average
    if average is None:
        return m.replicas
    ratio = average / policy.target
    if abs(ratio - 1.0) <= policy.tolerance:
        return m.replicas
    # A tiny epsilon keeps 0.75 / 0.75 * 3 from becoming 3.0000000001 -> 4.
    return max(1, math.ceil(m.ready_count * ratio - 1e-9))


def _window(state: ScalerState, now: float, rec: int, policy: Policy) -> ScalerState:
    horizon = now - policy.stabilisation_s
    kept = tuple((at, r) for at, r in state.recommendations if at > horizon)
    return replace(state, recommendations=(*kept, (now, rec)))


def _decision(m: Measurement, policy: Policy, desired: int, rec: int, reason: Reason) -> Decision:
    return Decision(
        current=m.replicas,
        desired=desired,
        reason=reason,
        recommendation=rec,
        utilization=m.average,
        target=policy.target,
        queue_wait_s=m.queue_wait_s,
        queued=m.queued,
        in_flight=m.in_flight,
    )


@dataclass(frozen=True)
class ReplicaSample:
    """One replica as the pool sees it: its cgroup's cumulative CPU time and readiness."""

    cpu_seconds: float
    ready: bool


@dataclass(frozen=True)
class QueueSample:
    """The dispatcher's view of one script's queue over the last tick."""

    max_wait_s: float = 0.0  # longest wait of any call queued during the tick
    queued: int = 0
    in_flight: int = 0


@dataclass(frozen=True)
class _Counters:
    at: float
    cpu: dict[str, float]


class Autoscaler:
    """Runs `decide` every tick for one deployed script.

    The callables: `read_usage()` -> {replica id: ReplicaSample} for every replica the pool
    counts (starting ones with ready=False, draining ones left out: len() is the current
    count); `read_queue()` -> QueueSample;
    `set_replicas(n)` asks the pool for n (new replicas join when ready, removed ones
    drain first); `record_event(decision)` is called for every decision that scales.
    """

    def __init__(
        self,
        policy: Policy,
        vcpus: float,
        workers_per_replica: int,
        read_usage: Callable[[], Awaitable[Mapping[str, ReplicaSample]]],
        read_queue: Callable[[], Awaitable[QueueSample]],
        set_replicas: Callable[[int], Awaitable[None]],
        record_event: Callable[[Decision], Awaitable[None]],
        tick_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy
        self._vcpus = vcpus
        self._workers = workers_per_replica
        self._read_usage = read_usage
        self._read_queue = read_queue
        self._set_replicas = set_replicas
        self._record_event = record_event
        self._tick_s = tick_s
        self._clock = clock
        self._state = ScalerState()
        self._last: _Counters | None = None
        self.last_decision: Decision | None = None  # for `scriptctl show`

    async def run(self) -> None:
        """Tick until cancelled; a failing tick is logged and the next one tried."""
        while True:
            try:
                await self.step()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("autoscaler tick failed")
            await asyncio.sleep(self._tick_s)

    async def step(self) -> Decision | None:
        """One tick. The first tick only takes the counters' baseline and returns None."""
        now = self._clock()
        usage = await self._read_usage()
        queue = await self._read_queue()
        previous = self._last
        self._last = _Counters(now, {rid: s.cpu_seconds for rid, s in usage.items()})
        if previous is None:
            self._state = ScalerState.starting_at(now, len(usage))
            return None
        m = Measurement(
            at=now,
            replicas=len(usage),
            utilizations=self._utilizations(previous, now, usage),
            ready=sum(1 for s in usage.values() if s.ready),
            queue_wait_s=queue.max_wait_s,
            queued=queue.queued,
            in_flight=queue.in_flight,
            workers_per_replica=self._workers,
        )
        decision, self._state = decide(m, self._state, self.policy)
        self.last_decision = decision
        if decision.scales:
            await self._set_replicas(decision.desired)
            await self._record_event(decision)
        return decision

    def _utilizations(
        self, previous: _Counters, now: float, usage: Mapping[str, ReplicaSample]
    ) -> tuple[float, ...]:
        elapsed = now - previous.at
        if elapsed <= 0:
            return ()
        # A replica without a previous counter joined during the tick: no full interval yet.
        return tuple(
            max(0.0, s.cpu_seconds - previous.cpu[rid]) / (elapsed * self._vcpus)
            for rid, s in usage.items()
            if s.ready and rid in previous.cpu
        )

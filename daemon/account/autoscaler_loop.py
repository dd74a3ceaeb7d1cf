"""Autoscaling, wired: one `daemon.account.scaling_rules.Autoscaler` per deployed script whose min
and max replicas differ, fed from the replica runner and acting on it.

`Scaling.started(target)` is called when a version starts serving (deploy, redeploy,
restart) and starts or replaces the script's autoscaler with the version's policy;
`stopped(script)` before its replicas stop. Each tick reads every replica's cgroup CPU
counter (in a thread), the dispatcher's queue and the calls in flight, and a decision
that changes the count calls `ReplicaRunner.scale` and is written as a "scaled" event
with its inputs (`scriptctl events NAME`, `scriptctl show NAME`).

The queue signal. The dispatcher counts waiting calls but does not time them, so a
`QueueWatch` samples the count ten times a second: the wait reported is how long the
queue has been without a break non-empty, an upper bound of the oldest call's wait
(a queue that never empties means every worker stays busy and calls keep waiting).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from daemon.account.scaling_rules import Autoscaler, Decision, Policy, QueueSample, ReplicaSample
from daemon.config.account import AutoscaleConfig
from daemon.core.models import Event, now_iso
from daemon.serving.dispatcher import Dispatcher
from daemon.serving.launcher import workers_for
from daemon.serving.replica import READY, Replica
from daemon.serving.target import RunTarget
from daemon.store.database import Store

__all__ = ["QueueWatch", "ScalableRunner", "Scaling"]

log = logging.getLogger(__name__)
ACTOR = "autoscaler"
SAMPLE_S = 0.1


class ScalableRunner(Protocol):
    def replicas(self, script: str) -> list[Replica]: ...
    def scale(self, script: str, replicas: int) -> None: ...
    def dispatcher(self, script: str) -> Dispatcher | None: ...


class QueueWatch:
    """How long the script's queue has been non-empty, sampled every SAMPLE_S."""

    def __init__(self, queued: Any, clock: Any = time.monotonic) -> None:
        self._queued = queued  # () -> calls waiting now
        self._clock = clock
        self._since: float | None = None  # when the queue was last seen becoming non-empty
        self._longest = 0.0  # longest unbroken stretch since the last take()

    def sample(self) -> None:
        now = self._clock()
        if self._queued() > 0:
            if self._since is None:
                self._since = now
            self._longest = max(self._longest, now - self._since)
        else:
            self._since = None

    def take(self) -> float:
        """The longest wait seen since the last take (the tick's queue_wait_s)."""
        self.sample()
        longest, self._longest = self._longest, 0.0
        return longest

    async def run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(SAMPLE_S)


@dataclass
class _Scaler:
    target: RunTarget
    autoscaler: Autoscaler
    tasks: tuple[asyncio.Task[None], ...]


class Scaling:
    def __init__(self, runner: ScalableRunner, store: Store, config: AutoscaleConfig) -> None:
        self._runner = runner
        self._store = store
        self._config = config
        self._scalers: dict[str, _Scaler] = {}

    def policy(self, target: RunTarget) -> Policy:
        c = self._config
        return Policy.from_percent(
            target.min_replicas, target.max_replicas, target.cpu_target,
            tolerance=c.tolerance, stabilisation_s=c.stabilisation_s, queue_wait_s=c.queue_wait_s,
        )  # fmt: skip

    def started(self, target: RunTarget) -> None:
        """A version of the script serves now: (re)start its autoscaler if it has one."""
        self.stopped(target.script)
        if target.min_replicas == target.max_replicas:
            return  # min = max: never scales
        script = target.script
        watch = QueueWatch(lambda: self._queued(script))
        scaler = Autoscaler(
            self.policy(target),
            target.profile.vcpus,
            workers_for(target.profile.vcpus),
            read_usage=lambda: self._usage(script),
            read_queue=lambda: self._queue(script, watch),
            set_replicas=lambda n: self._scale(script, n),
            record_event=lambda d: self._record(target, d),
            tick_s=self._config.tick_s,
        )
        loop = asyncio.get_running_loop()
        tasks = (
            loop.create_task(scaler.run(), name=f"autoscale-{script}"),
            loop.create_task(watch.run(), name=f"queue-watch-{script}"),
        )
        self._scalers[script] = _Scaler(target, scaler, tasks)
        log.info("%s v%d: autoscaling %d..%d replicas at %d%% CPU", script, target.version,
                 target.min_replicas, target.max_replicas, target.cpu_target)  # fmt: skip

    def stopped(self, script: str) -> None:
        scaler = self._scalers.pop(script, None)
        if scaler is not None:
            for task in scaler.tasks:
                task.cancel()

    async def close(self) -> None:
        tasks = [t for s in self._scalers.values() for t in s.tasks]
        self._scalers.clear()
        for task in tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)

    def replicas(self, script: str) -> list[Replica]:
        """The script's live replicas (what `scriptctl show` lists)."""
        return self._runner.replicas(script)

    def status(self, script: str) -> dict[str, Any]:
        """What `scriptctl show` prints under Autoscaling: live counts and the last tick."""
        replicas = self._runner.replicas(script)
        scaler = self._scalers.get(script)
        last = scaler.autoscaler.last_decision if scaler else None
        return {
            "enabled": scaler is not None,
            "replicas": len(replicas),
            "ready": sum(1 for r in replicas if r.state == READY),
            "last_decision": None if last is None else _decision_json(last),
        }

    # --- the autoscaler's callables ---------------------------------------------
    def _queued(self, script: str) -> int:
        dispatcher = self._runner.dispatcher(script)
        return dispatcher.queued if dispatcher is not None else 0

    async def _usage(self, script: str) -> Mapping[str, ReplicaSample]:
        replicas = self._runner.replicas(script)
        return await asyncio.to_thread(_samples, replicas)

    async def _queue(self, script: str, watch: QueueWatch) -> QueueSample:
        busy = sum(r.busy for r in self._runner.replicas(script))
        return QueueSample(max_wait_s=watch.take(), queued=self._queued(script), in_flight=busy)

    async def _scale(self, script: str, n: int) -> None:
        self._runner.scale(script, n)

    async def _record(self, target: RunTarget, d: Decision) -> None:
        detail = {"version": target.version, **d.to_event()}
        log.info(
            "%s: scale %d -> %d (%s, cpu %s%%, queue wait %.1f s)", target.script,
            d.current, d.desired, d.reason, detail["utilization_pct"], d.queue_wait_s,
        )  # fmt: skip
        event = Event(0, target.script_id, now_iso(), "scaled", ACTOR, detail)
        await asyncio.to_thread(self._store.add_event, target.script_id, event)


def _samples(replicas: list[Replica]) -> dict[str, ReplicaSample]:
    out = {}
    for r in replicas:
        usage = r.usage()  # reads the cgroup's files
        cpu = usage.cpu_seconds if usage is not None else 0.0
        out[r.name] = ReplicaSample(cpu_seconds=cpu, ready=r.state == READY)
    return out


def _decision_json(d: Decision) -> dict[str, Any]:
    return d.to_event()

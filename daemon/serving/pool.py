"""The replicas of one version of one script, kept at a target count.

Run with gunicorn's arbiter verbs: `spawn` a replica, `kill` one, `reap` the ones that
exited (the replica reports it), `murder` the ones whose supervisor did not obey a
kill_worker within the grace time, and `manage` the pool back to its target. A replica
that dies is replaced; start failures back off exponentially, and after
`max_start_failures` in a row the pool stops trying and reports the reason instead of
restarting in a hot loop.

Free workers go to a `Sink` (the script's dispatcher) once the pool is `activate`d;
before that (a redeploy warming up) they are parked.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from daemon.config.daemon_config import Config
from daemon.core import log_context
from daemon.core.cancel import uncancellable
from daemon.metrics.instruments import REPLICA_START, REPLICA_START_FAILURES
from daemon.serving.process import Launcher, UsageInfo
from daemon.serving.replica import Replica, ReplicaStartError
from daemon.serving.spare import Parking, SpareSlot
from daemon.serving.worker import Worker

log = logging.getLogger(__name__)

__all__ = ["Pool", "PoolSettings", "Sink"]

# Replica numbers are unique in the process: a version started twice (a retried deploy)
# must not reuse the cgroup name of a replica still draining.
_REPLICA_SEQ = itertools.count(1)


@dataclass(frozen=True)
class PoolSettings:
    start_timeout_s: float = Config.replica_start_timeout_s  # launch to hello + K workers
    max_start_failures: int = Config.replica_max_start_failures  # in a row, then give up
    backoff_s: float = 1.0  # wait after the first failed restart; doubles each time
    backoff_max_s: float = 30.0
    kill_grace_s: float = 5.0  # kill_worker unanswered this long: the replica is killed
    ping_interval_s: float = Config.replica_ping_interval_s  # each supervisor, this often
    ping_timeout_s: float = Config.replica_ping_timeout_s  # unanswered this long: killed
    stable_s: float = 10.0  # a replica that dies sooner after ready counts as a failed start
    tick_s: float = 1.0  # how often manage runs without being woken
    spare_sandbox: bool = Config.replica_spare_sandbox  # keep one replica parked ahead


class Sink(Protocol):
    def offer(self, worker: Worker) -> None: ...


class Pool:
    """Replicas of one version. `await start(n)`, `activate()`, ..., `await stop()`."""

    def __init__(
        self,
        name: str,
        launcher: Launcher,
        settings: PoolSettings,
        sink: Sink,
        on_failed: Callable[[str], None] | None = None,
        drain_timeout_s: float = 60.0,
        script: str | None = None,
    ) -> None:
        self.name = name
        self.script = script or name  # the metrics' label
        self.launcher = launcher
        self.settings = settings
        self.sink = sink
        self.on_failed = on_failed
        self.drain_timeout_s = drain_timeout_s  # for scale-down: the script's timeout
        self.target = 0
        self.ready: set[Replica] = set()
        self.starting: set[Replica] = set()
        self.active = False
        self.failed: str | None = None  # why the pool gave up
        self.hello: dict[str, Any] | None = None
        self._parked: list[Worker] = []
        self._failures = 0  # failed starts since the pool was last stable
        self._failed_at = 0.0
        self._next_spawn = 0.0
        self._stopping = False
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop = asyncio.get_running_loop()
        parking = launcher if settings.spare_sandbox and isinstance(launcher, Parking) else None
        self.spare = SpareSlot(parking, self._new_name)
        self._closing_spare: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"<Pool {self.name} ready={len(self.ready)} target={self.target}>"

    @property
    def functions(self) -> tuple[str, ...]:
        return tuple(self.hello.get("functions", ())) if self.hello else ()

    # --- lifetime -----------------------------------------------------------
    async def start(self, count: int) -> None:
        """Start `count` replicas at once and wait for all to be ready (a deploy).
        On any failure the others are stopped and the first error is raised; a load
        error (the script's own traceback) is preferred over other reasons."""
        self.target = count
        try:
            results = await asyncio.gather(
                *(self._start_one() for _ in range(count)), return_exceptions=True
            )
        except BaseException:  # cancelled (a deploy cancelled): the ready ones must stop too
            await uncancellable(self.stop(drain_timeout=0))
            raise
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            await self.stop(drain_timeout=0)
            load = [e for e in errors if isinstance(e, ReplicaStartError) and e.load_error]
            raise (load or errors)[0]
        self._task = self._loop.create_task(self._run())
        self.spare.refill()

    def activate(self) -> None:
        """From now on free workers go to the sink (traffic switches to this pool)."""
        self.active = True
        parked, self._parked = self._parked, []
        for worker in parked:
            if worker.usable:
                self.sink.offer(worker)

    def retire(self) -> None:
        """Take no new calls (the calls running go on); `stop` then drains."""
        self.active = False
        self._parked.clear()
        for replica in self.ready | self.starting:
            replica.refuse_calls()

    async def stop(self, drain_timeout: float) -> None:
        """Stop managing, drain every replica (up to drain_timeout) and stop it."""
        self._stopping = True
        self.retire()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for task in list(self._tasks):
            task.cancel()
        await self.spare.close()
        replicas = list(self.ready | self.starting)
        await asyncio.gather(*(r.stop(drain_timeout) for r in replicas), return_exceptions=True)
        self.ready.clear()
        self.starting.clear()

    def scale(self, target: int) -> None:
        """Set the replica count manage keeps (the autoscaler's lever)."""
        self.target = target
        self._wake.set()

    def usage(self) -> list[UsageInfo]:
        return [u for r in self.ready if (u := r.usage()) is not None]

    def replicas(self) -> list[Replica]:
        """The replicas the target counts: ready ones and starting ones (not draining)."""
        return [*self.ready, *self.starting]

    # --- the verbs ----------------------------------------------------------
    def _new_name(self) -> str:
        return f"{self.name}-r{next(_REPLICA_SEQ)}"

    async def _start_one(self) -> Replica:
        """A replica from the spare if one is parked (serving/spare.py), else cold."""
        began = time.monotonic()
        taken = await self.spare.take()
        name, launched = taken if taken is not None else (self._new_name(), None)
        replica = Replica(name, self.launcher, self, self.script)
        replica.started_at = began  # its release counts in its start
        # a task of its own (gather's or spawn's): the replica's tasks inherit this
        log_context.bind(replica=replica.name)
        self.starting.add(replica)
        try:
            await replica.start(self.settings.start_timeout_s, launched)
        except BaseException as exc:
            self.starting.discard(replica)
            if isinstance(exc, ReplicaStartError):
                REPLICA_START_FAILURES.labels(self.script).inc()
            with contextlib.suppress(TimeoutError):
                await uncancellable(asyncio.wait_for(replica.wait_gone(), 10))
            raise
        self.starting.discard(replica)
        if self._stopping:
            await replica.stop(0)
            raise ReplicaStartError(f"pool {self.name} stopped while a replica started")
        self.ready.add(replica)
        if self.hello is None:
            self.hello = replica.hello
        seconds = (replica.ready_at or 0) - replica.started_at
        REPLICA_START.labels(self.script).observe(seconds)
        how = " (released from the spare sandbox)" if launched is not None else ""
        log.info("%s ready in %.0f ms%s", replica.name, seconds * 1000, how)
        return replica

    def spawn(self) -> None:
        """Start one more replica in the background (a replacement or a scale-up)."""
        task = self._loop.create_task(self._spawn())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _spawn(self) -> None:
        try:
            await self._start_one()
        except ReplicaStartError as exc:
            self._start_failed(exc)
        else:
            self.spare.refill()  # the next start's, now that this one is serving
        finally:
            self._wake.set()

    def _start_failed(self, exc: ReplicaStartError) -> None:
        if self._stopping:
            return
        self._failures += 1
        self._failed_at = self._loop.time()
        if self._failures >= self.settings.max_start_failures:
            self._fail(f"{self._failures} replica starts failed in a row; last: {exc.reason}")
            return
        s = self.settings
        delay = min(s.backoff_s * 2 ** (self._failures - 1), s.backoff_max_s)
        self._next_spawn = self._loop.time() + delay
        log.warning("%s: replica start failed (%s); next try in %.1f s", self.name, exc, delay)

    def _fail(self, reason: str) -> None:
        self.failed = reason
        log.error("%s: giving up: %s", self.name, reason)
        self._closing_spare = self._loop.create_task(self.spare.close())  # no starts to come
        if self.on_failed is not None:
            self.on_failed(reason)

    def kill(self, replica: Replica) -> None:
        replica.kill()

    def reap(self, replica: Replica) -> None:
        """Forget a replica that exited; manage replaces it."""
        self.ready.discard(replica)
        self.starting.discard(replica)
        ex = replica.exit
        if not self._stopping and ex is not None and not ex.killed:
            log.warning("%s exited: %s", replica.name, ex.reason)
            lived = time.monotonic() - (replica.ready_at or 0.0)
            if lived < self.settings.stable_s:  # dies soon after start: no hot loop either
                self._start_failed(
                    ReplicaStartError(f"a replica exited {lived:.1f} s after start: {ex.reason}")
                )
        self._wake.set()

    def murder(self) -> None:
        """Kill replicas whose supervisor ignored a kill_worker or a ping for too long."""
        now = time.monotonic()
        s = self.settings
        for replica in list(self.ready):
            late = [n for n, t in replica.kills_sent.items() if now - t > s.kill_grace_s]
            deaf = replica.ping_sent is not None and now - replica.ping_sent > s.ping_timeout_s
            if late or deaf:
                why = f"did not stop worker(s) {late}" if late else "does not answer pings"
                log.error("%s %s: killing the replica", replica.name, why)
                self.kill(replica)

    def ping(self) -> None:
        for replica in self.ready:
            replica.ping()

    def manage(self) -> None:
        """Bring the number of replicas (ready + starting) back to the target."""
        if self._stopping or self.failed is not None:
            return
        now = self._loop.time()
        if self._failures and self.ready and now - self._failed_at > self.settings.stable_s:
            self._failures = 0  # stable again: forget old failures
        live = len(self.ready) + len(self.starting)
        if live < self.target and now >= self._next_spawn:
            # After a failure, retry one at a time; otherwise fill every slot at once.
            for _ in range(1 if self._failures else self.target - live):
                self.spawn()
        elif live > self.target and self.ready:
            extra = max(self.ready, key=lambda r: r.started_at)  # the newest goes first
            self.ready.discard(extra)
            task = self._loop.create_task(extra.stop(self.drain_timeout_s))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self) -> None:
        next_ping = 0.0
        while not self._stopping:
            if time.monotonic() >= next_ping:
                self.ping()
                next_ping = time.monotonic() + self.settings.ping_interval_s
            self.murder()
            self.manage()
            self.spare.check()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.tick_s)
            self._wake.clear()

    # --- Listener (called by replicas) --------------------------------------
    def worker_ready(self, worker: Worker) -> None:
        if self.active:
            self.sink.offer(worker)
        else:
            self._parked.append(worker)

    def replica_exited(self, replica: Replica) -> None:
        self.reap(replica)

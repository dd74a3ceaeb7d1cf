"""The lifecycle's `Runner` (daemon/serving/target.py) made of pools, and the gateway's entry point.

Per script it holds one `Dispatcher` (kept across versions, so calls queued during a
redeploy are served by the new version) and the `Pool` of the serving version.

Redeploy switch: the new version's pool starts and every replica answers hello while
the old pool keeps serving; then, with no await in between, the dispatcher forgets the
old idle workers, the old pool stops taking calls and the new pool's workers are
offered (queued calls take them at once); then the old pool drains (its running calls
finish) and stops, in the background. Under steady load no call fails.
Undeploy: the dispatcher refuses new calls (503), then the pool drains and stops.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sandbox
from daemon.config.daemon_config import Config
from daemon.core import log_context
from daemon.core.cancel import uncancellable
from daemon.serving.call_errors import Unavailable
from daemon.serving.dispatcher import CallResult, Dispatcher, DispatchSettings
from daemon.serving.launcher import LaunchSettings, SandboxLauncher
from daemon.serving.plain_launcher import PlainLauncher
from daemon.serving.pool import Pool, PoolSettings
from daemon.serving.process import Launcher, UsageInfo
from daemon.serving.replica import Replica, ReplicaStartError
from daemon.serving.replica_logs import LogWriter
from daemon.serving.target import RunnerError, RunTarget

log = logging.getLogger(__name__)

__all__ = ["ReplicaRunner", "RunnerSettings", "ServingVersion"]

LauncherFactory = Callable[[RunTarget], Launcher]
FailureHook = Callable[[str, str], object]  # (script name, reason); may return an awaitable


@dataclass(frozen=True)
class RunnerSettings:
    launch: LaunchSettings = field(default_factory=LaunchSettings)
    pool: PoolSettings = field(default_factory=PoolSettings)
    dispatch: DispatchSettings = field(default_factory=DispatchSettings)
    shutdown_drain_s: float = Config.shutdown_drain_s  # running calls may finish this long


@dataclass
class ServingVersion:
    """What serves a script now: one entry of the one table the gateway reads per call."""

    target: RunTarget
    dispatcher: Dispatcher
    pool: Pool


class ReplicaRunner:
    """Runs deployed versions as pools of sandboxed replicas."""

    def __init__(
        self,
        settings: RunnerSettings,
        root: sandbox.CgroupRoot | None = None,
        *,
        launcher_factory: LauncherFactory | None = None,
        on_failing: FailureHook | None = None,
        logs: LogWriter | None = None,
    ) -> None:
        if launcher_factory is None and root is None:
            raise ValueError("ReplicaRunner needs a CgroupRoot or a launcher_factory")
        self.settings = settings
        self._root = root
        self._launcher: LauncherFactory = launcher_factory or self._sandbox_launcher
        self._on_failing = on_failing
        self.logs = logs  # the replicas' output (None: the daemon's stderr)
        self._serving: dict[str, ServingVersion] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._retiring: set[asyncio.Future[Any]] = set()

    # --- the gateway's side ---------------------------------------------------
    def serving(self, script: str) -> ServingVersion | None:
        return self._serving.get(script)

    def dispatcher(self, script: str) -> Dispatcher | None:
        serving = self._serving.get(script)
        return serving.dispatcher if serving is not None else None

    async def call(
        self,
        script: str,
        function: str,
        payload: Any = None,
        *,
        payload_json: bytes | None = None,
        call_id: str | None = None,
    ) -> CallResult:
        """Call a deployed script's function. Raises a dispatcher.CallError."""
        serving = self._serving.get(script)
        if serving is None:
            raise Unavailable(f"script {script!r} is not deployed")
        return await serving.dispatcher.call(
            function, payload, payload_json=payload_json, call_id=call_id
        )

    # --- the autoscaler's side --------------------------------------------------
    def usage(self, script: str) -> list[UsageInfo]:
        serving = self._serving.get(script)
        return serving.pool.usage() if serving is not None else []

    def replicas(self, script: str) -> list[Replica]:
        """The serving pool's ready and starting replicas (autoscaler and metering)."""
        serving = self._serving.get(script)
        return serving.pool.replicas() if serving is not None else []

    # --- the metrics' side (read when scraped, on the loop) ------------------------
    def replica_states(self) -> dict[tuple[str, str], int]:
        """Replicas of the serving versions by (script, state)."""
        counts: dict[tuple[str, str], int] = {}
        for script, serving in self._serving.items():
            for replica in serving.pool.replicas():
                key = (script, replica.state)
                counts[key] = counts.get(key, 0) + 1
        return counts

    def queued_calls(self) -> dict[str, int]:
        """Calls waiting for a free worker, by script."""
        return {script: s.dispatcher.queued for script, s in self._serving.items()}

    def scale(self, script: str, replicas: int) -> None:
        serving = self._serving.get(script)
        if serving is not None:
            serving.pool.scale(replicas)

    # --- Runner -------------------------------------------------------------
    async def start(self, target: RunTarget) -> None:
        # the deploy's (or restart's) task, and the pool's tasks made from it, log
        # with the script and version (daemon/core/log_context.py)
        log_context.bind(script=target.script, version=target.version)
        async with self._lock(target.script):
            old = self._serving.get(target.script)
            dispatcher = old.dispatcher if old is not None else self._new_dispatcher(target)
            pool = Pool(
                f"{target.script}-v{target.version}",
                self._launcher(target),
                self.settings.pool,
                dispatcher,
                on_failed=lambda reason: self._pool_failed(target.script, pool, reason),
                drain_timeout_s=float(target.timeout_s),
                script=target.script,
            )
            try:
                await pool.start(max(1, target.min_replicas))
            except ReplicaStartError as exc:
                raise RunnerError(_reason(exc)) from exc
            except BaseException:  # cancelled: the pool is not serving, so stop() won't see it
                await uncancellable(pool.stop(0))
                raise
            self._switch(target, dispatcher, pool, old)

    def _switch(
        self, target: RunTarget, dispatcher: Dispatcher, pool: Pool, old: ServingVersion | None
    ) -> None:
        """No await in here: no call can see a half-switched script."""
        dispatcher.timeout_s = float(target.timeout_s)
        dispatcher.functions = frozenset(pool.functions) if pool.hello else None
        dispatcher.drop_idle()
        if old is not None:
            old.pool.retire()
        pool.activate()
        dispatcher.open()
        self._serving[target.script] = ServingVersion(target, dispatcher, pool)
        if old is not None:
            self._retire(old.pool, float(old.target.timeout_s))

    def _retire(self, pool: Pool, drain_timeout: float) -> None:
        task = asyncio.get_running_loop().create_task(pool.stop(drain_timeout))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def stop(self, script: str) -> None:
        async with self._lock(script):
            serving = self._serving.pop(script, None)
            if serving is None:
                return
            serving.dispatcher.close(f"script {script!r} is not deployed")
            await serving.pool.stop(float(serving.target.timeout_s))

    async def close(self) -> None:
        for serving in self._serving.values():
            serving.dispatcher.close("scriptd is shutting down")
        pools = [s.pool for s in self._serving.values()]
        self._serving.clear()
        drain = self.settings.shutdown_drain_s
        await asyncio.gather(*(p.stop(drain) for p in pools), return_exceptions=True)
        if self._retiring:
            await asyncio.gather(*self._retiring, return_exceptions=True)

    # --- helpers ------------------------------------------------------------
    def _lock(self, script: str) -> asyncio.Lock:
        return self._locks.setdefault(script, asyncio.Lock())

    @classmethod
    def without_sandbox(
        cls,
        settings: RunnerSettings,
        on_failing: FailureHook | None = None,
        logs: LogWriter | None = None,
    ) -> ReplicaRunner:
        """Development only (scriptd --dev-no-sandbox): replicas are plain processes, with
        no isolation and no limits."""
        log.warning("replicas run WITHOUT a sandbox: development only")
        return cls(
            settings,
            launcher_factory=lambda t: PlainLauncher.for_target(t, settings.launch, logs),
            on_failing=on_failing,
            logs=logs,
        )

    def _sandbox_launcher(self, target: RunTarget) -> Launcher:
        assert self._root is not None
        return SandboxLauncher(target, self.settings.launch, self._root, self.logs)

    def _new_dispatcher(self, target: RunTarget) -> Dispatcher:
        return Dispatcher(target.script, float(target.timeout_s), self.settings.dispatch)

    def _pool_failed(self, script: str, pool: Pool, reason: str) -> None:
        serving = self._serving.get(script)
        if serving is None or serving.pool is not pool:
            return
        if not pool.ready:
            serving.dispatcher.close(f"script {script!r} is failing: {reason}")
        if self._on_failing is None:
            return
        try:
            result = self._on_failing(script, reason)
        except Exception:
            log.exception("on_failing hook for %s failed", script)
            return
        if inspect.isawaitable(result):  # an async hook (the lifecycle's) runs as a task
            task = asyncio.ensure_future(result)
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)


def _reason(exc: ReplicaStartError) -> str:
    """The deploy's failure reason: the message, and the script's traceback if any."""
    tb = (exc.error or {}).get("traceback") or ""
    return f"{exc.reason}\n{tb}".rstrip() if tb else exc.reason

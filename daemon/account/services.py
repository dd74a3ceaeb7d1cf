"""Autoscaling, credits and notifications wired into the daemon in one object.

`AccountServices` gives the rest of scriptd two things:

- itself as the lifecycle's hooks (`Context.hooks`, daemon/lifecycle/hooks.py): credits admit a
  deploy, and each deploy, failed deploy and undeploy queues its email;
- `.runner`, a `ScaledRunner` to be the lifecycle's `Runner` (`Context.runner`),
  wrapping the one it had: when a version starts serving, its autoscaler and its
  metering start; before a script's replicas stop, its autoscaler stops (so it never
  scales a pool that drains). Every way a script starts or stops serving goes through
  the runner (deploy, redeploy, restart, undeploy, delete, shutdown).

main.py builds it once the store and the replica runner exist, calls `start()`
(the meter, the autoscalers', the outbox's, retention's and the usage samples'
tasks) and `close()` after the runner closed, so the last seconds of every replica
are charged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from daemon.account.autoscaler_loop import ScalableRunner, Scaling
from daemon.account.mailer_loop import Notifications
from daemon.account.metering_loop import Metering
from daemon.account.retention_loop import Retention
from daemon.account.usage_loop import UsageSampling
from daemon.config.daemon_config import Config
from daemon.core.credits import format_credits
from daemon.core.models import Resources, Script, Version
from daemon.lifecycle.hooks import CREDITS_ACTOR
from daemon.serving.target import Runner, RunTarget
from daemon.store.database import Store
from daemon.store.state_dir import StateDir

__all__ = ["AccountServices"]

log = logging.getLogger(__name__)


class _Nothing:
    """The replica source when the runner is not a ReplicaRunner (tests): no replicas."""

    def replicas(self, script: str) -> list[Any]:
        return []

    def scale(self, script: str, replicas: int) -> None:
        return None

    def dispatcher(self, script: str) -> None:
        return None


class ScaledRunner:
    """The lifecycle's Runner: the given one, with autoscaling and metering around it."""

    def __init__(
        self, inner: Runner, scaling: Scaling, metering: Metering, usage: UsageSampling
    ) -> None:
        self.inner = inner
        self._scaling = scaling
        self._metering = metering
        self._usage = usage

    async def start(self, target: RunTarget) -> None:
        await self.inner.start(target)  # raises RunnerError: nothing of ours changes
        self._metering.started(target)
        self._scaling.started(target)
        self._usage.started(target)

    async def stop(self, script: str) -> None:
        self._usage.stopped(script)
        self._scaling.stopped(script)
        self._metering.stopped(script)
        await self.inner.stop(script)

    async def close(self) -> None:
        await self._scaling.close()
        await self.inner.close()


class AccountServices:
    def __init__(
        self, config: Config, store: Store, inner: Runner, replicas: ScalableRunner | None
    ) -> None:
        source: ScalableRunner = replicas if replicas is not None else _Nothing()
        self.notifications = Notifications(config, store)
        self.metering = Metering(config, store, source, self.notifications)
        self.scaling = Scaling(source, store, config.account.autoscale)
        self.usage = UsageSampling(source, store, config.account.autoscale.sample_s)
        self.runner = ScaledRunner(inner, self.scaling, self.metering, self.usage)
        self.retention = Retention(config, store, StateDir(config.state_dir))
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self, undeploy: Callable[[str, str], Awaitable[object]]) -> None:
        """`undeploy(actor, name)` is the lifecycle's; the meter calls it at zero balance."""
        account = await self.metering.open()
        log.info("credits: %s of %s left", format_credits(account.balance),
                 format_credits(account.allocation))  # fmt: skip
        self.metering.undeploy = lambda name: undeploy(CREDITS_ACTOR, name)
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self.metering.run(), name="metering"),
            loop.create_task(self.notifications.run(), name="outbox"),
            loop.create_task(self.retention.run(), name="retention"),
            loop.create_task(self.usage.run(), name="usage-samples"),
        ]

    async def close(self) -> None:
        """After the runner closed: settle the last replicas, stop the tasks."""
        await self.scaling.close()
        await self.metering.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # --- LifecycleHooks ---------------------------------------------------------------
    async def admit(self, resources: Resources) -> None:
        await self.metering.admit(resources)

    async def deployed(self, script: Script, version: Version) -> None:
        await self.notifications.deployed(script, version)
        await self.metering.deployed()

    async def deploy_failed(self, script: Script, version: Version, reason: str) -> None:
        await self.notifications.deploy_failed(script, version, reason)

    async def undeployed(self, script: Script, version: Version | None, actor: str) -> None:
        if actor != CREDITS_ACTOR:  # those get one credits_exhausted email together
            await self.notifications.undeployed(script, version)

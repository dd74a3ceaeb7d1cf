"""Credits, wired: the `daemon.account.credit_rules.Meter` charging every running replica into the
store's ledger, the deploy admission check, and what happens at low and zero balance.

Which replicas cost. Every replica of a serving version, from its launch (warm-up
included) until it is gone (a replica that drains after a scale-down or a redeploy
costs until it exits). `Metering` looks at the runner's replicas twice a second and
watches each one it finds until it is gone, then settles it at that moment, so the
ledger holds replica-seconds x rate to within the loop's latency. A replica's id in
the ledger is the daemon run's id (its start time in ms, hex) and the replica's
name, unique across runs; replicas never outlive their daemon (the next start kills
leftovers), so nothing is counted twice.

At low balance (the `credits.low_balance` setting, crossed downwards) one
low_credits email; at zero with replicas running: every Deployed script is
undeployed (its data kept) and one credits_exhausted email names them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from daemon.account.credit_rules import Meter, RunningReplica, admission
from daemon.account.email_messages import ScriptRef
from daemon.account.mailer_loop import Notifications
from daemon.config.daemon_config import Config
from daemon.core.credits import Account, Charge, LedgerEntry, format_credits, to_micro
from daemon.core.errors import Conflict, ScriptdError
from daemon.core.models import DEPLOYED, Resources, now_iso
from daemon.serving.replica import Replica
from daemon.serving.target import RunTarget
from daemon.store.database import Store

__all__ = ["Metering", "ReplicaSource", "StoreLedger"]

log = logging.getLogger(__name__)
DISCOVER_S = 0.5

Undeploy = Callable[[str], Awaitable[object]]  # script name -> undeployed (credits actor)


class ReplicaSource(Protocol):
    def replicas(self, script: str) -> list[Replica]: ...


class StoreLedger:
    """daemon.account.credit_rules.Ledger over the store, each call in a thread."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def high_water(self, replica_id: str) -> int | None:
        return await asyncio.to_thread(self._store.usage_high_water, replica_id)

    async def charge(self, entries: Sequence[LedgerEntry]) -> Charge:
        return await asyncio.to_thread(self._store.charge_usage, entries, now_iso())


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class _Tracked:
    replica: Replica
    cost: RunningReplica
    watcher: asyncio.Task[None] | None = None


class Metering:
    def __init__(
        self, config: Config, store: Store, source: ReplicaSource, notifications: Notifications
    ) -> None:
        self._config = config
        self._credits = config.account.credits
        self._store = store
        self._source = source
        self._notifications = notifications
        self.run_id = f"{now_ms():x}"
        self.undeploy: Undeploy | None = None  # set once the lifecycle exists
        self._targets: dict[str, RunTarget] = {}
        self._tracked: dict[str, _Tracked] = {}
        self._tasks: set[asyncio.Task[object]] = set()
        self.meter = Meter(
            self._running,
            StoreLedger(store),
            self._low,
            self._exhausted,
            low_balance=self._credits.low_balance,
            interval_s=self._credits.meter_interval_s,
        )

    async def open(self) -> Account:
        """Create the account with `credits.initial_allocation` the first time."""
        initial = to_micro(self._credits.initial_allocation)
        return await asyncio.to_thread(self._store.ensure_account, initial, now_iso())

    async def run(self) -> None:
        """Charge every meter interval and find new replicas in between (until cancelled)."""
        meter = asyncio.create_task(self.meter.run(), name="credits-meter")
        try:
            while True:
                self._discover()
                await asyncio.sleep(DISCOVER_S)
        finally:
            meter.cancel()
            await asyncio.gather(meter, return_exceptions=True)

    # --- the runner's side --------------------------------------------------------
    def started(self, target: RunTarget) -> None:
        self._targets[target.script] = target
        self._discover()

    def stopped(self, script: str) -> None:
        """Its replicas are about to drain: the watchers charge them until they are gone."""
        self._discover()
        self._targets.pop(script, None)

    async def close(self) -> None:
        """After the runner stopped everything: settle what is still tracked."""
        watchers = [t.watcher for t in self._tracked.values() if t.watcher is not None]
        if watchers:
            await asyncio.wait(watchers, timeout=5)
        for tracked in list(self._tracked.values()):  # still not gone: charged until now
            if tracked.watcher is not None:
                tracked.watcher.cancel()
            await self._settle(tracked, now_ms())

    def _discover(self) -> None:
        for script, target in self._targets.items():
            for replica in self._source.replicas(script):
                rid = f"{self.run_id}:{replica.name}"
                if rid not in self._tracked and not replica.gone:
                    self._track(rid, replica, target)

    def _track(self, rid: str, replica: Replica, target: RunTarget) -> None:
        # Charged from the launch: monotonic start -> wall-clock milliseconds.
        started = now_ms() - int((time.monotonic() - replica.started_at) * 1000)
        cost = RunningReplica(
            rid, target.script, target.version, target.profile.name,
            to_micro(target.profile.credits_per_hour), started,
        )  # fmt: skip
        tracked = _Tracked(replica, cost)
        self._tracked[rid] = tracked
        tracked.watcher = asyncio.get_running_loop().create_task(self._watch(tracked))

    async def _watch(self, tracked: _Tracked) -> None:
        await tracked.replica.wait_gone()
        await self._settle(tracked, now_ms())

    async def _settle(self, tracked: _Tracked, ended_ms: int) -> None:
        if self._tracked.pop(tracked.cost.replica_id, None) is None:
            return
        try:
            await self.meter.settle(tracked.cost, ended_ms)
        except Exception:
            log.exception("settling replica %s failed", tracked.cost.replica_id)

    async def _running(self) -> list[RunningReplica]:
        self._discover()
        return [t.cost for t in self._tracked.values()]

    # --- admission ------------------------------------------------------------------
    async def admit(self, resources: Resources) -> None:
        """Refuse a deploy the balance cannot pay for min replicas x admission_hours."""
        profile = self._config.profile(resources.profile) or self._config.default_profile
        account = await asyncio.to_thread(self._store.get_account)
        verdict = admission(
            account, profile.name, to_micro(profile.credits_per_hour),
            resources.min_replicas, self._credits.admission_hours,
        )  # fmt: skip
        if not verdict.ok:
            raise Conflict(
                verdict.message,
                reason="insufficient_credits",
                needed_credits=format_credits(verdict.needed),
                balance_credits=format_credits(max(0, account.balance)),
                allocation_credits=format_credits(account.allocation),
            )

    # --- low and zero ---------------------------------------------------------------
    async def _deployed(self) -> list[ScriptRef]:
        scripts = await asyncio.to_thread(self._store.list_scripts, None)
        return [
            ScriptRef(s.name, s.current_version)
            for s in scripts
            if s.status == DEPLOYED and s.current_version is not None
        ]

    async def _low(self, account: Account) -> None:
        log.warning("credits low: %s of %s left", format_credits(account.balance),
                    format_credits(account.allocation))  # fmt: skip
        await self._notifications.low_credits(await self._deployed(), account)

    async def deployed(self) -> None:
        """A deploy admitted before the balance ran out may finish after the meter's one
        exhausted call: undeploy it too."""
        account = await asyncio.to_thread(self._store.get_account)
        if account.balance <= 0:
            await self._exhausted(account)

    async def _exhausted(self, account: Account) -> None:
        # Undeploying drains calls: not inside the meter's tick.
        task = asyncio.get_running_loop().create_task(self._undeploy_all(account))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _undeploy_all(self, account: Account) -> None:
        refs = await self._deployed()
        log.error("credits exhausted: undeploying %s", ", ".join(r.name for r in refs) or "none")
        done = []
        for ref in refs:
            try:
                if self.undeploy is not None:
                    await self.undeploy(ref.name)
                done.append(ref)
            except ScriptdError as exc:  # a redeploy in progress, deleted meanwhile, ...
                log.error("credits exhausted: cannot undeploy %s: %s", ref.name, exc)
        after = await asyncio.to_thread(self._store.get_account)
        await self._notifications.credits_exhausted(done, after)

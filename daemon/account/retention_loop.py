"""Retention, wired: a background pass that prunes what the store and the state dir
would otherwise keep for ever, by age and by count per script.

    executions.retention_days   records older than this go (default 30)
    executions.max_per_script   a script keeps its newest this many (default 100,000)

The same two limits hold for finished asynchronous calls (a queued or running one,
or one whose callback is still due, stays), for the email outbox (sent and failed
emails only: one still queued or retrying stays whatever its age) and for the build
logs of versions (by the file's time; the log of a script's current version always
stays). A pass runs at start and every `executions.prune_interval_s`, off the hot
path: the deletes go in batches of `executions.prune_batch` rows, each one short
transaction in a thread, so the gateway's record writer never waits for more than
one batch.

The clock is injectable (`clock`, unix seconds): tests age records without sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from daemon.config.daemon_config import Config
from daemon.core.models import Script
from daemon.store.database import Store
from daemon.store.keys_table import iso_from_unix
from daemon.store.state_dir import StateDir

__all__ = ["Pruned", "Retention"]

log = logging.getLogger(__name__)
DAY_S = 86_400.0


@dataclass(frozen=True)
class Pruned:
    """What one pass removed."""

    executions: int = 0
    outbox: int = 0
    build_logs: int = 0
    async_calls: int = 0

    @property
    def total(self) -> int:
        return self.executions + self.outbox + self.build_logs + self.async_calls


class Retention:
    def __init__(
        self,
        config: Config,
        store: Store,
        state: StateDir,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.max_age_s = config.executions_retention_days * DAY_S
        self.keep = config.executions_max_per_script
        self.every_s = config.executions_prune_interval_s
        self.batch = config.executions_prune_batch
        self._store = store
        self._state = state
        self.clock = clock
        self.passes = 0  # completed passes (tests wait on it)

    async def run(self) -> None:
        """A pass now, then every `executions.prune_interval_s` (until cancelled)."""
        while True:
            try:
                await self.prune()
            except Exception:  # the store busy or a file vanished: the next pass retries
                log.exception("retention: a pass failed")
            await asyncio.sleep(self.every_s)

    async def prune(self) -> Pruned:
        """One pass over executions, async calls, the outbox and build logs."""
        cutoff = self.clock() - self.max_age_s
        executions = await self._executions(iso_from_unix(cutoff))
        async_calls = await self._async_calls(int(cutoff * 1000))
        outbox = await self._batches(self._store.prune_outbox, iso_from_unix(cutoff), self.keep)
        scripts = await asyncio.to_thread(self._store.list_scripts)
        logs = await asyncio.to_thread(self._build_logs, scripts, cutoff)
        pruned = Pruned(executions, outbox, logs, async_calls)
        self.passes += 1
        if pruned.total:
            log.info("retention: pruned %d execution records, %d async calls, %d emails, "
                     "%d build logs", pruned.executions, pruned.async_calls, pruned.outbox,
                     pruned.build_logs)  # fmt: skip
        return pruned

    async def _executions(self, cutoff: str) -> int:
        store, removed = self._store, 0
        for script_id in await asyncio.to_thread(store.script_ids):
            removed += await self._batches(store.prune_executions_before, script_id, cutoff)
            removed += await self._batches(store.prune_executions_over, script_id, self.keep)
        return removed

    async def _async_calls(self, cutoff_ms: int) -> int:
        store, removed = self._store, 0
        for script_id in await asyncio.to_thread(store.script_ids):
            removed += await self._batches(store.prune_async_calls_before, script_id, cutoff_ms)
            removed += await self._batches(store.prune_async_calls_over, script_id, self.keep)
        return removed

    async def _batches(self, prune: Callable[..., int], *args: object) -> int:
        """Call `prune(*args, batch)` in a thread until a batch comes back short."""
        removed = 0
        while True:
            n = await asyncio.to_thread(prune, *args, self.batch)
            removed += n
            if n < self.batch:
                return removed

    def _build_logs(self, scripts: list[Script], cutoff: float) -> int:
        """Blocking: remove old build logs and those past the newest `keep` per script."""
        removed = 0
        for script in scripts:
            logs = sorted(self._logs_of(script.id), reverse=True)  # newest version first
            for rank, (number, path) in enumerate(logs):
                if number == script.current_version:
                    continue
                if rank >= self.keep or _mtime(path) < cutoff:
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()
                        removed += 1
        return removed

    def _logs_of(self, script_id: int) -> list[tuple[int, Path]]:
        versions = self._state.script_dir(script_id) / "versions"
        try:
            names = os.listdir(versions)
        except FileNotFoundError:
            return []
        found = []
        for name in names:
            path = versions / name / "build.log"
            if name.isdigit() and path.exists():
                found.append((int(name), path))
        return found


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return float("inf")

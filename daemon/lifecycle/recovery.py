"""What the daemon does for scripts when it starts, and its periodic housekeeping.

`Recovery.reconcile()` runs once at start, before the daemon serves: versions a
crash left Deploying fail as "interrupted", every Deployed script is handed to
the runner again (side by side; a version whose source or environment this host
lacks, as after a restore, is unpacked and built first), and files of scripts and
uploads that are no longer wanted are swept. One script that cannot start again never stops the
others or the daemon: whatever it raises is logged and recorded on the script
as a "restart_failed" event, and the script stays Deployed so an operator sees
it and can undeploy or redeploy it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

from daemon.core.errors import BuildError
from daemon.core.models import DEPLOYED, V_DEPLOYING, Event, Script, now_iso
from daemon.lifecycle.backup import remove_leftovers
from daemon.lifecycle.context import Context
from daemon.lifecycle.deployer import INTERRUPTED, Deployer
from daemon.serving.target import RunnerError
from daemon.serving.workspace_image import unmount_stale

log = logging.getLogger(__name__)


class Recovery:
    def __init__(self, ctx: Context, deployer: Deployer) -> None:
        self.ctx = ctx
        self.deployer = deployer

    async def reconcile(self) -> None:
        ctx = self.ctx
        await ctx.db(remove_leftovers, ctx.state)  # of a backup the last run did not finish
        for v in await ctx.db(ctx.store.versions_in_status, V_DEPLOYING):
            await self.deployer.fail(v, INTERRUPTED)
        scripts = await ctx.db(ctx.store.list_scripts, None)
        deployed = [s for s in scripts if s.status == DEPLOYED and s.current_version]
        results = await asyncio.gather(
            *(self._restart(s) for s in deployed), return_exceptions=True
        )
        for script, result in zip(deployed, results, strict=True):
            if isinstance(result, BaseException):  # _restart records what it can
                log.error("restarting script %s failed: %r", script.name, result)
        scripts = await ctx.db(ctx.store.list_scripts, None)
        live = {s.id for s in scripts}
        # Only scripts that serve keep a mounted workspace; before any folder goes.
        serving = {ctx.state.workspace(s.id) for s in scripts if s.status == DEPLOYED}
        await ctx.db(unmount_stale, ctx.state.scripts, serving)
        await ctx.db(ctx.state.sweep_script_dirs, live)
        await ctx.db(ctx.state.sweep_staged_archives, ctx.config.staged_archive_ttl_s)
        await self.sweep_archives()
        await self.sweep_builds()

    async def _restart(self, script: Script) -> None:
        """Hand a Deployed script back to the runner. Whatever goes wrong (a version
        missing from the store or from disk, a runner that raises anything) becomes
        a "restart_failed" event and the version's failure reason; never raises but
        for cancellation."""
        ctx, number = self.ctx, script.current_version
        v = await ctx.db(ctx.store.get_version, script.id, number) if number else None
        try:
            if v is None:
                raise RunnerError(f"its current version v{number} is not in the store")
            v = await self.deployer.rebuild_if_missing(v)  # after a restore, say
            await ctx.runner.start(await self.deployer.target(v))
            if v.failure_reason:  # it was failing before the restart: it serves again
                await ctx.db(ctx.store.save_version, replace(v, failure_reason=None))
        except (RunnerError, BuildError) as exc:
            log.error("script %s v%s did not start again: %s", script.name, number, exc)
            await self._record_failure(script, number, str(exc))
        except Exception as exc:
            log.exception("script %s v%s did not start again", script.name, number)
            await self._record_failure(script, number, f"internal error: {exc!r}")

    async def _record_failure(self, script: Script, number: int | None, reason: str) -> None:
        ctx = self.ctx
        detail = {"version": number, "reason": reason}
        event = Event(0, script.id, now_iso(), "restart_failed", "scriptd", detail)
        v = await ctx.db(ctx.store.get_version, script.id, number) if number else None
        if v is None:
            await ctx.db(ctx.store.add_event, script.id, event)
            return
        # `show` tells why calls get 503, as for replicas that fail while running.
        failing = replace(v, failure_reason=f"replicas failing: {reason}")
        await ctx.db(ctx.store.save_version, failing, None, event)

    async def housekeeping(self, every_s: float = 600) -> None:
        """Forever: drop uploads past their time to live, unused environments and
        oversized build caches (a task of the daemon)."""
        while True:
            await asyncio.sleep(every_s)
            try:
                await self.ctx.db(
                    self.ctx.state.sweep_staged_archives, self.ctx.config.staged_archive_ttl_s
                )
                await self.sweep_builds()
            except OSError as exc:
                log.warning("sweeping uploads or builds failed: %s", exc)

    async def sweep_builds(self) -> None:
        """Remove built environments that no version needs; bound the build caches."""
        in_use = await self.ctx.db(self.ctx.store.env_keys_in_use)
        await self.ctx.builder.sweep(in_use)

    async def sweep_archives(self) -> None:
        """Remove the project archives that no script or version refers to."""
        in_use = await self.ctx.db(_archives_in_use, self.ctx)
        await self.ctx.db(self.ctx.state.sweep_archives, in_use)


def _archives_in_use(ctx: Context) -> set[str]:
    paths = {s.archive.path for s in ctx.store.list_scripts(None)}
    for s in ctx.store.list_scripts(None):
        paths |= {v.config.archive.path for v in ctx.store.list_versions(s.id)}
    return paths

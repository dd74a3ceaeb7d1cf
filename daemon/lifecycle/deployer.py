"""One deployment, from Deploying to Deployed or Deployment Failed.

`Deployer.run(version)` is the task the lifecycle starts for a new version:
unpack the project into the version's folder, build (or reuse) its environment,
hand it to the runner, then record the result. Each step's phase is written to
the store as it begins, so `deploy --wait` can show progress. A failure at any
step records the reason; when a redeploy fails the previous version keeps
serving and the script stays Deployed.

All store and file work runs in threads; every state change happens under the
script's lock (shared with the lifecycle), re-reading the rows first, so a
rename or an undeploy in between is never overwritten.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from daemon.archive.steps import STEP_FILE, StepSpecError, read_step_spec
from daemon.build.catalogue import Runtime
from daemon.core.errors import BadRequest, BuildError
from daemon.core.models import (
    DEPLOYED,
    FAILED,
    V_DEPLOYED,
    V_FAILED,
    V_SUPERSEDED,
    Event,
    Version,
    VersionSnapshot,
    now_iso,
)
from daemon.lifecycle.context import Context
from daemon.serving.target import RunnerError, RunTarget
from daemon.serving.workspace_image import WorkspaceError, ensure_mounted, release
from daemon.store.secret_box import SecretBoxError

log = logging.getLogger(__name__)
T = TypeVar("T")
INTERRUPTED = "interrupted"


class Deployer:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def run(self, version: Version) -> None:
        """The deploy task. Never raises, except CancelledError."""
        try:
            target = await self._prepare(version)
            await self._set_phase(version, "starting")
            await self.ctx.runner.start(target)
            await self._succeed(version, target)
        except asyncio.CancelledError:
            if version.script_id not in self.ctx.deleting:
                await asyncio.shield(self.fail(version, INTERRUPTED))
            raise
        except (BuildError, RunnerError) as exc:
            await self.fail(version, str(exc))
        except Exception as exc:
            log.exception("deploy of version %d failed unexpectedly", version.id)
            await self.fail(version, f"internal error: {exc}")

    async def _prepare(self, version: Version) -> RunTarget:
        ctx, cfg = self.ctx, version.config
        runtime = self._runtime(cfg)
        src = ctx.state.source_dir(version.script_id, version.number)
        build_log = ctx.state.build_log(version.script_id, version.number)
        await ctx.db(_fresh_dir, src.parent)
        await self._unpack(Path(cfg.archive.path), src, cfg.language)
        await self._mount_workspace(version)
        await self._set_phase(version, "building")
        base = ctx.config.steps_base_packages if await ctx.db(_is_step, src) else ()
        built = await ctx.builder.build(cfg.language, runtime, src, build_log, base)
        version = await self._update(version, env_key=built.env_key)
        return await self.target(version, runtime)

    async def rebuild_if_missing(self, version: Version) -> Version:
        """Before a Deployed version starts again: unpack its source and build its
        environment when this host lacks them (a restored backup holds neither; an
        emptied build cache loses the environment). Its status and phase stay."""
        ctx, cfg = self.ctx, version.config
        src = ctx.state.source_dir(version.script_id, version.number)
        key = version.env_key
        has_src = await ctx.db(src.is_dir)
        if has_src and key is not None and await ctx.db(ctx.builder.is_built, key):
            return version
        log.info("v%d of script %d: source or environment missing, preparing it again",
                 version.number, version.script_id)  # fmt: skip
        runtime = self._runtime(cfg)
        if not has_src:
            await ctx.db(_fresh_dir, src.parent)
            await self._unpack(Path(cfg.archive.path), src, cfg.language)
        build_log = ctx.state.build_log(version.script_id, version.number)
        built = await ctx.builder.build(cfg.language, runtime, src, build_log)
        return await self._update(version, env_key=built.env_key)

    async def target(self, version: Version, runtime: Runtime | None = None) -> RunTarget:
        """What the runner needs to run `version` (built already)."""
        ctx, cfg = self.ctx, version.config
        runtime = runtime or self._runtime(cfg)
        script = await ctx.db(ctx.store.get_script_by_id, version.script_id)
        assert script is not None and version.env_key is not None
        profile = ctx.config.profile(cfg.resources.profile) or ctx.config.default_profile
        res = cfg.resources
        if res.memory_bytes is not None:  # a step's default limit, below the profile's
            profile = replace(profile, memory_bytes=min(res.memory_bytes, profile.memory_bytes))
        source_dir = ctx.state.source_dir(version.script_id, version.number)
        try:  # the source of the version decides its kind: a step.toml makes a step
            step_spec = await ctx.db(read_step_spec, source_dir)
        except (StepSpecError, OSError) as exc:
            raise BuildError(f"step.toml: {exc}") from None
        env, secrets = await self._environment(cfg)
        return RunTarget(
            script_id=version.script_id,
            script=script.name,
            version=version.number,
            language=cfg.language,
            runtime_version=runtime.version,
            runtime_path=runtime.path,
            source_dir=source_dir,
            env_dir=ctx.builder.env_dir(version.env_key),
            workspace_dir=ctx.state.workspace(version.script_id),
            env=env,
            timeout_s=cfg.settings.timeout_s,
            functions=cfg.functions,
            min_replicas=res.min_replicas,
            max_replicas=res.max_replicas,
            cpu_target=res.cpu_target,
            profile=profile,
            step_spec=step_spec,
            secret_values=tuple(v for v in secrets.values() if v),
            egress=cfg.settings.egress,
            secrets=secrets,
            async_calls=cfg.settings.async_calls,
            concurrency=cfg.settings.concurrency,
            workers_per_replica=cfg.settings.workers_per_replica,
        )

    async def _environment(self, cfg: VersionSnapshot) -> tuple[dict[str, str], dict[str, str]]:
        """(the replica's environment, its secret values by name), sealed values opened
        here and nowhere else. A secret deleted since it was granted, or a value the
        key does not open, fails the deploy with the reason."""
        store = self.ctx.store
        try:
            granted = await self.ctx.db(store.secret_values, cfg.settings.secrets)
            env = await self.ctx.db(store.env_values, cfg.settings.env)
        except (BadRequest, SecretBoxError) as exc:
            raise BuildError(str(exc)) from None
        secret_env = {e.key: env[e.key] for e in cfg.settings.env if e.secret}
        return {**env, **granted}, {**secret_env, **granted}

    async def _mount_workspace(self, version: Version) -> None:
        """The script's workspace filesystem, sized by the version's profile (private
        from the start: the launcher hands it to the script's uid, 0700 too)."""
        ctx = self.ctx
        profile = ctx.config.profile(version.config.resources.profile)
        size = (profile or ctx.config.default_profile).workspace_bytes
        try:
            await ctx.db(ensure_mounted, ctx.state.workspace(version.script_id), size)
        except WorkspaceError as exc:
            raise BuildError(f"the workspace cannot be mounted: {exc}") from None

    def _runtime(self, cfg: VersionSnapshot) -> Runtime:
        runtime = self.ctx.catalogue.pick(cfg.language, cfg.language_version)
        if runtime is None or runtime.version != cfg.language_version:
            have = ", ".join(self.ctx.catalogue.versions(cfg.language)) or "none"
            raise BuildError(
                f"{cfg.language} {cfg.language_version} is not on this host (it has: {have})"
            )
        return runtime

    async def _unpack(self, archive: Path, src: Path, language: str) -> None:
        from daemon.archive.intake import unpack_archive
        from daemon.archive.types import ArchiveError

        try:
            await self.ctx.db(
                unpack_archive, archive, src, language, self.ctx.config.archive_limits()
            )
        except ArchiveError as exc:
            raise BuildError(f"the project archive cannot be unpacked: {exc}") from None
        except OSError as exc:
            raise BuildError(f"the project archive cannot be unpacked: {exc}") from None

    async def _set_phase(self, version: Version, phase: str) -> None:
        await self._update(version, phase=phase)

    async def _update(self, version: Version, **changes: Any) -> Version:
        ctx = self.ctx
        async with ctx.lock(version.script_id):
            current = await ctx.db(ctx.store.get_version_by_id, version.id)
            return await ctx.db(ctx.store.save_version, replace(current, **changes))

    async def _succeed(self, version: Version, target: RunTarget) -> None:
        ctx, now = self.ctx, now_iso()
        async with ctx.lock(version.script_id):
            v = await ctx.db(ctx.store.get_version_by_id, version.id)
            script = await ctx.db(ctx.store.get_script_by_id, version.script_id)
            assert script is not None
            previous = script.current_version
            if previous is not None and previous != v.number:
                old = await ctx.db(ctx.store.get_version, script.id, previous)
                if old is not None:
                    await ctx.db(ctx.store.save_version, replace(old, status=V_SUPERSEDED))
            script = replace(
                v.config.applied_to(script),
                status=DEPLOYED,
                current_version=v.number,
                updated_at=now,
            )
            done = replace(v, status=V_DEPLOYED, phase="done", ended_at=now)
            event = Event(0, script.id, now, "deployed", v.deployed_by, {"version": v.number})
            await ctx.db(ctx.store.save_version, done, script, event)
        log.info("%s v%d deployed in %.1f s", target.script, v.number, done.duration_s or 0)
        await ctx.hooks.deployed(script, done)

    async def fail(self, version: Version, reason: str) -> None:
        """Record the failure of `version`; the script falls back to what still serves."""
        ctx, now = self.ctx, now_iso()
        async with ctx.lock(version.script_id):
            script = await ctx.db(ctx.store.get_script_by_id, version.script_id)
            if script is None:  # deleted meanwhile: nothing left to record
                return
            v = await ctx.db(ctx.store.get_version_by_id, version.id)
            serving = script.current_version is not None
            script = replace(script, status=DEPLOYED if serving else FAILED, updated_at=now)
            failed = replace(v, status=V_FAILED, ended_at=now, failure_reason=reason)
            detail = {"version": v.number, "reason": reason}
            event = Event(0, script.id, now, "deploy_failed", v.deployed_by, detail)
            await ctx.db(ctx.store.save_version, failed, script, event)
            if not serving:  # no replica uses the workspace: its loop device goes
                await ctx.db(release, ctx.state.workspace(version.script_id))
        src = ctx.state.source_dir(version.script_id, version.number)
        await ctx.db(shutil.rmtree, src, True)
        log.warning("%s v%d failed: %s", script.name, v.number, reason)
        await ctx.hooks.deploy_failed(script, failed, reason)


def _is_step(src: Path) -> bool:
    """A code step (a step.toml): it builds on the base packages of steps."""
    return (src / STEP_FILE).is_file()


def _fresh_dir(path: Path) -> None:
    """The version's folder, emptied of a previous attempt's leftovers (not its log)."""
    path.mkdir(parents=True, exist_ok=True)
    for child in path.iterdir():
        if child.name != "build.log":
            shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink()

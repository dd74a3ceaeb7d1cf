"""The script lifecycle: every action of DESIGN.md's status table.

`Lifecycle` takes typed calls from the admin API (actor = the caller's user
name, body = the checked JSON object) and returns store objects. An action the
script's status does not allow raises Conflict naming the status and what it
allows. Checks all happen before the first write, so a refused action changes
nothing. Actions on one script are serialised by its lock; a deploy runs as a
task (daemon/lifecycle/deployer.py) and at most one runs per script. What happens at the
daemon's start (reconcile) and its housekeeping live in daemon/lifecycle/recovery.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from daemon.core.errors import Conflict, InvalidArchive, NotFound
from daemon.core.models import (
    DEPLOYED,
    DEPLOYING,
    DRAFT,
    FAILED,
    READY,
    V_DEPLOYING,
    V_UNDEPLOYED,
    ArchiveRef,
    Event,
    Script,
    Version,
    VersionSnapshot,
    now_iso,
)
from daemon.lifecycle import request_checks
from daemon.lifecycle.context import Context
from daemon.lifecycle.deployer import Deployer
from daemon.lifecycle.recovery import Recovery
from daemon.lifecycle.status_table import REDEPLOY_FIELDS, refuse
from daemon.serving.host_files import remove_script_logs
from daemon.serving.workspace_image import release, unmount
from daemon.store.state_dir import StagedArchive

log = logging.getLogger(__name__)


class Lifecycle:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.deployer = Deployer(ctx)
        self.recovery = Recovery(ctx, self.deployer)

    # --- reading -------------------------------------------------------------------

    async def get(self, name: str) -> Script:
        script = await self.ctx.db(self.ctx.store.get_script, name)
        if script is None:
            raise NotFound(f"no script named {name!r}")
        return script

    @contextlib.asynccontextmanager
    async def _locked(self, name: str) -> AsyncIterator[Script]:
        """Hold the script's lock and give the script as stored once it is held: an
        action that waited for the lock must not act on what it read before."""
        script = await self.get(name)
        async with self.ctx.lock(script.id):
            yield await self.get(name)

    async def scripts(self, search: str | None) -> list[Script]:
        return await self.ctx.db(self.ctx.store.list_scripts, search)

    async def deployment(self, script: Script) -> Version | None:
        """The newest version (the deploy in progress, or the last one)."""
        versions = await self.ctx.db(self.ctx.store.list_versions, script.id)
        return versions[0] if versions else None

    async def history(self, name: str) -> tuple[list[Version], list[Event]]:
        script = await self.get(name)
        versions = await self.ctx.db(self.ctx.store.list_versions, script.id)
        return versions, await self.ctx.db(self.ctx.store.list_events, script.id)

    async def version(self, name: str, number: int) -> tuple[Script, Version]:
        script = await self.get(name)
        v = await self.ctx.db(self.ctx.store.get_version, script.id, number)
        if v is None:
            raise NotFound(f"script {name!r} has no version {number}")
        return script, v

    # --- archives ------------------------------------------------------------------

    async def validate(self, archive_id: str, language: str | None) -> Any:
        from daemon.archive.intake import validate_archive

        upload = await self._staged_archive(archive_id)
        limits = self.ctx.config.archive_limits()
        return await self.ctx.db(validate_archive, upload.path, language, limits)

    async def _staged_archive(self, archive_id: str) -> StagedArchive:
        upload = await self.ctx.db(
            self.ctx.state.find_staged_archive, request_checks.archive_id(archive_id)
        )
        if upload is None:
            raise NotFound(
                f"no uploaded archive {archive_id!r} (uploads are kept "
                f"{self.ctx.config.staged_archive_ttl_s} s): upload it again with POST /v1/archives"
            )
        return upload

    async def _checked_archive(self, archive_id: str, language: str) -> tuple[ArchiveRef, Any]:
        report = await self.validate(archive_id, language)
        if not report.ok:
            raise InvalidArchive(
                f"the project archive is not valid: {report.errors[0].message}", report.to_json()
            )
        upload = await self._staged_archive(archive_id)
        return await self.ctx.db(self.ctx.state.keep_archive, upload), report

    # --- create and update ---------------------------------------------------------

    async def create(self, actor: str, body: dict[str, Any]) -> Script:
        cfg = self.ctx.config
        body = request_checks.check_object(body, request_checks.SCRIPT_FIELDS)
        name = request_checks.script_name(body.get("name"))
        language = request_checks.language(body.get("language"))
        version = self._language_version(language, body.get("language_version"))
        description = request_checks.description(body.get("description", ""))
        settings = request_checks.settings(body, request_checks.default_settings(cfg), cfg)
        await self._check_granted(settings.secrets)
        resources = request_checks.resources(body, request_checks.default_resources(cfg), cfg)
        deploy = request_checks.flag("deploy", body.get("deploy", False))
        if deploy:
            await self.ctx.hooks.admit(resources)  # refused for credits: nothing created
        if "archive_id" not in body:
            raise request_checks.BadRequest("archive_id is required: upload with POST /v1/archives")
        if await self.ctx.db(self.ctx.store.get_script, name) is not None:
            raise Conflict(f"a script named {name!r} already exists")
        archive, report = await self._checked_archive(body["archive_id"], language)
        settings, resources = request_checks.with_step(settings, resources, report.step, body, cfg)
        now = now_iso()
        script = Script(
            0, name, description, language, version, DRAFT, actor, now, now,
            settings, resources, archive, tuple(report.functions), None,
        )  # fmt: skip
        event = Event(0, 0, now, "created", actor, {"archive": archive.to_json()})
        script = await self.ctx.db(self.ctx.store.insert_script, script, event)
        if deploy:
            return await self.deploy(actor, name)
        return script

    def _language_version(self, language: str, wanted: object) -> str:
        if wanted is not None and not isinstance(wanted, str):
            raise request_checks.BadRequest("language_version must be a string such as '3.11'")
        runtime = self.ctx.catalogue.pick(language, wanted)
        if runtime is None:
            have = ", ".join(self.ctx.catalogue.versions(language)) or "none"
            what = f"{language} {wanted}" if wanted else language
            raise NotFound(
                f"language_version: {what} is not on this host; available: {have}",
                field="language_version",
            )
        return runtime.version

    async def update(self, actor: str, name: str, body: dict[str, Any]) -> Script:
        body = request_checks.check_object(body, request_checks.SCRIPT_FIELDS - {"deploy"})
        async with self._locked(name) as script:
            if script.status not in (DRAFT, READY, FAILED):
                raise refuse(script, "update", "use redeploy" if script.status == DEPLOYED else "")
            fixed = [f for f in request_checks.FIXED_AFTER_DRAFT if f in body]
            if fixed and script.status != DRAFT:
                raise refuse(script, f"change {', '.join(fixed)} of", "only a Draft can")
            new = await self._changed(script, body)
            now = now_iso()
            new = replace(new, updated_at=now)
            event = Event(0, script.id, now, "updated", actor, {"fields": sorted(body)})
            return await self.ctx.db(self.ctx.store.save_script, new, event)

    async def _changed(self, script: Script, body: dict[str, Any]) -> Script:
        """`script` with the changes of `body` applied (all checked; nothing written)."""
        cfg = self.ctx.config
        new = script
        if "name" in body and body["name"] != script.name:
            name = request_checks.script_name(body["name"])
            if await self.ctx.db(self.ctx.store.get_script, name) is not None:
                raise Conflict(f"a script named {name!r} already exists")
            new = replace(new, name=name)
        if "language" in body:
            new = replace(new, language=request_checks.language(body["language"]))
        if "language" in body or "language_version" in body:
            # a new language without a version takes that language's default
            wanted = body.get("language_version")
            new = replace(new, language_version=self._language_version(new.language, wanted))
        if "description" in body:
            new = replace(new, description=request_checks.description(body["description"]))
        new = replace(
            new,
            settings=request_checks.settings(body, new.settings, cfg),
            resources=request_checks.resources(body, new.resources, cfg),
        )
        await self._check_granted(new.settings.secrets if "secrets" in body else ())
        if "archive_id" in body:
            archive, report = await self._checked_archive(body["archive_id"], new.language)
            settings, res = request_checks.with_step(
                new.settings, new.resources, report.step, body, cfg
            )
            new = replace(
                new, archive=archive, functions=tuple(report.functions), settings=settings,
                resources=res,
            )  # fmt: skip
        elif new.language != script.language:
            raise request_checks.BadRequest("changing the language needs a new archive_id as well")
        return new

    async def _check_granted(self, names: tuple[str, ...]) -> None:
        missing = await self.ctx.db(self.ctx.store.missing_secrets, names)
        if missing:
            raise NotFound(
                f"unknown secret {missing[0]!r}: set it first with `scriptctl secrets set "
                f"{missing[0]}`",
                field="secrets",
            )

    # --- deploy, redeploy, undeploy ------------------------------------------------

    async def deploy(self, actor: str, name: str) -> Script:
        async with self._locked(name) as script:
            if script.status not in (DRAFT, READY, FAILED):
                raise refuse(script, "deploy", "use redeploy" if script.status == DEPLOYED else "")
            return await self._start_deploy(actor, script, script)

    async def redeploy(self, actor: str, name: str, body: dict[str, Any]) -> Script:
        body = request_checks.check_object(body, request_checks.SCRIPT_FIELDS - {"deploy"})
        async with self._locked(name) as script:
            if script.status != DEPLOYED:
                raise refuse(script, "redeploy", "redeploy is for Deployed scripts")
            fixed = [f for f in request_checks.FIXED_AFTER_DRAFT if f in body]
            if fixed:
                raise refuse(script, f"change {', '.join(fixed)} of", "never on redeploy")
            wanted = await self._changed(script, {k: body[k] for k in REDEPLOY_FIELDS & set(body)})
            return await self._start_deploy(actor, script, wanted)

    async def _start_deploy(self, actor: str, script: Script, wanted: Script) -> Script:
        """Record a new Deploying version built from `wanted` and start its task.
        Called with the script's lock held; `script` is the stored row."""
        await self.ctx.hooks.admit(wanted.resources)  # may refuse (credits): nothing written
        runtime = self.ctx.catalogue.pick(wanted.language, wanted.language_version)
        number = await self.ctx.db(self.ctx.store.next_version_number, script.id)
        now = now_iso()
        version = Version(
            0, script.id, number, await self._free_display_name(script, number), V_DEPLOYING,
            "unpacking", actor, now, None, None,
            VersionSnapshot.of(wanted, runtime.path if runtime else ""),
        )  # fmt: skip
        deploying = replace(script, status=DEPLOYING, updated_at=now)
        event = Event(0, script.id, now, "deploy_started", actor, {"version": number})
        version = await self.ctx.db(self.ctx.store.begin_version, deploying, version, event)
        task = asyncio.create_task(self.deployer.run(version), name=f"deploy-{script.name}")
        self.ctx.tasks[script.id] = task
        task.add_done_callback(lambda _t: self._forget(script.id, task))
        return await self.get(script.name)

    def _forget(self, script_id: int, task: asyncio.Task[None]) -> None:
        if self.ctx.tasks.get(script_id) is task:
            del self.ctx.tasks[script_id]

    async def _free_display_name(self, script: Script, number: int) -> str:
        taken = {v.display_name for v in await self.ctx.db(self.ctx.store.list_versions, script.id)}
        name, n = f"{script.name}-v{number}", number
        while name in taken:  # a user renamed an old version to this default name
            n += 1
            name = f"{script.name}-v{number}-{n}"
        return name

    async def undeploy(self, actor: str, name: str) -> Script:
        async with self._locked(name) as script:
            if script.status != DEPLOYED or script.id in self.ctx.tasks:
                raise refuse(script, "undeploy")
            await self.ctx.runner.stop(script.name)
            await self.ctx.db(release, self.ctx.state.workspace(script.id))  # image kept
            now = now_iso()
            ready = replace(script, status=READY, current_version=None, updated_at=now)
            event = Event(0, script.id, now, "undeployed", actor, {})
            if script.current_version is None:
                saved = await self.ctx.db(self.ctx.store.save_script, ready, event)
                await self.ctx.hooks.undeployed(saved, None, actor)
                return saved
            v = await self.ctx.db(self.ctx.store.get_version, script.id, script.current_version)
            assert v is not None
            event = replace(event, detail={"version": v.number})
            done = replace(v, status=V_UNDEPLOYED, undeployed_by=actor, undeployed_at=now)
            await self.ctx.db(self.ctx.store.save_version, done, ready, event)
            await self.ctx.hooks.undeployed(ready, done, actor)
            return await self.get(name)

    # --- delete, rename ------------------------------------------------------------

    async def delete(self, actor: str, name: str) -> None:
        async with self._locked(name) as script:
            if script.status == DEPLOYED:
                raise refuse(script, "delete", "undeploy it first")
            if script.status == DEPLOYING and script.current_version is not None:
                hint = (
                    f"a redeploy runs while v{script.current_version} serves; wait, then undeploy"
                )
                raise refuse(script, "delete", hint)
            task = self.ctx.tasks.get(script.id)
            self.ctx.deleting.add(script.id)
        try:
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            async with self.ctx.lock(script.id):
                await self.ctx.runner.stop(script.name)
                # No replica writes its logs any more, and the id is not free yet.
                await self.ctx.db(remove_script_logs, self.ctx.state.root / "logs", script.id)
                await self.ctx.db(unmount, self.ctx.state.workspace(script.id))
                trash = await self._delete_row_and_files(script.id)
        finally:
            self.ctx.deleting.discard(script.id)
        self.ctx.locks.pop(script.id, None)
        log.info("script %s deleted by %s", name, actor)
        if trash is not None:
            await self.ctx.db(self.ctx.state.remove_trash, trash)
        await self.sweep_archives()

    async def _delete_row_and_files(self, script_id: int) -> Path | None:
        """With the lock held: move the script's folder aside, then delete its row
        (the folder comes back if that fails); the caller removes the trash."""
        state = self.ctx.state
        trash = await self.ctx.db(state.trash_script_files, script_id)
        try:
            await self.ctx.db(self.ctx.store.delete_script, script_id)
        except BaseException:
            if trash is not None:
                await self.ctx.db(state.untrash_script_files, script_id, trash)
            raise
        return trash

    async def sweep_archives(self) -> None:
        await self.recovery.sweep_archives()

    async def rename_version(self, actor: str, name: str, number: int, body: Any) -> Version:
        body = request_checks.check_object(body, frozenset({"display_name"}))
        new_name = request_checks.display_name(body.get("display_name"))
        async with self._locked(name):
            script, v = await self.version(name, number)
            now = now_iso()
            detail = {"version": number, "from": v.display_name, "to": new_name}
            event = Event(0, script.id, now, "version_renamed", actor, detail)
            renamed = replace(v, display_name=new_name)
            return await self.ctx.db(
                self.ctx.store.save_version, renamed, replace(script, updated_at=now), event
            )

    # --- start and stop of the daemon ----------------------------------------------

    async def reconcile(self) -> None:
        """At start (daemon/lifecycle/recovery.py): interrupted deploys fail, Deployed scripts
        start again, leftovers are swept."""
        await self.recovery.reconcile()

    async def housekeeping(self, every_s: float = 600) -> None:
        await self.recovery.housekeeping(every_s)

    async def replicas_failing(self, name: str, reason: str) -> None:
        """The runner's hook: the serving version's replicas keep failing to start and
        the pool gave up (no hot loop). The script stays Deployed (DESIGN's status
        table has no other status for it: it can still be undeployed or redeployed,
        which is the fix), its serving version keeps status Deployed and gets
        `failure_reason` "replicas failing: <reason>" (what `scriptctl show` prints as
        the deployment's failure reason), and a "replicas_failing" event is recorded.
        Calls get 503 naming the reason once no replica is left. A redeploy starts a
        new version; a daemon restart that starts the replicas again clears it."""
        script = await self.ctx.db(self.ctx.store.get_script, name)
        if script is None:
            return
        async with self.ctx.lock(script.id):
            script = await self.ctx.db(self.ctx.store.get_script, name)
            if script is None or script.current_version is None:
                return
            v = await self.ctx.db(self.ctx.store.get_version, script.id, script.current_version)
            if v is None:
                return
            log.error("script %s v%d: replicas failing: %s", name, v.number, reason)
            detail = {"version": v.number, "reason": reason}
            event = Event(0, script.id, now_iso(), "replicas_failing", "scriptd", detail)
            failing = replace(v, failure_reason=f"replicas failing: {reason}")
            await self.ctx.db(self.ctx.store.save_version, failing, None, event)

    async def shutdown(self) -> None:
        """Cancel running deploys (they are recorded as interrupted)."""
        tasks = list(self.ctx.tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

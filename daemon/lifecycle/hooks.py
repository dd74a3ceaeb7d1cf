"""The lifecycle's hooks: where credits and notifications hear about deployments.

The lifecycle and the deployer call these at four points, through `Context.hooks`:
`admit` before a deploy or redeploy writes anything (it may refuse with a
`daemon.core.errors.ScriptdError`, which the admin API shows as it is), then `deployed`,
`deploy_failed` and `undeployed` after the change is committed. Those three never
raise: a mail server or a full disk must not undo a deployment. `NoHooks` is the
default (tests of the lifecycle alone); daemon/account/services.py has the real ones.
"""

from __future__ import annotations

from typing import Protocol

from daemon.core.models import Resources, Script, Version

__all__ = ["CREDITS_ACTOR", "LifecycleHooks", "NoHooks"]

# The actor of the undeploys the credits force: no "undeployed" email for each of
# them, one "credits exhausted" email for all.
CREDITS_ACTOR = "scriptd (credits exhausted)"


class LifecycleHooks(Protocol):
    async def admit(self, resources: Resources) -> None:
        """Raise if a deploy with these resources must not start (credits)."""
        ...

    async def deployed(self, script: Script, version: Version) -> None: ...

    async def deploy_failed(self, script: Script, version: Version, reason: str) -> None: ...

    async def undeployed(self, script: Script, version: Version | None, actor: str) -> None: ...


class NoHooks:
    async def admit(self, resources: Resources) -> None:
        return None

    async def deployed(self, script: Script, version: Version) -> None:
        return None

    async def deploy_failed(self, script: Script, version: Version, reason: str) -> None:
        return None

    async def undeployed(self, script: Script, version: Version | None, actor: str) -> None:
        return None

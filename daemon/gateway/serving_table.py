"""What the gateway reads on every call: which version of a script serves, in memory.

`Routes` is the lifecycle's `Runner` (daemon/serving/target.py): it wraps the replica runner
and remembers the `RunTarget` of every script it started, so the gateway answers from
one dict lookup (no SQLite on the hot path). Every way a script starts or stops
serving goes through the runner (deploy, redeploy, the restart's reconcile, undeploy,
delete, shutdown), so this table is invalidated exactly where the lifecycle acts.

A script that stops serving is dropped from the table before its replicas drain (new
calls get 503 at once while the running ones finish), and its API keys leave the
KeyChecker's cache (`invalidate_script`).
"""

from __future__ import annotations

from typing import Protocol

from daemon.keys.checker import KeyChecker
from daemon.serving.dispatcher import Dispatcher
from daemon.serving.target import Runner, RunTarget

__all__ = ["Routes", "ServingRunner"]


class ServingRunner(Runner, Protocol):
    """A Runner that also hands out each serving script's dispatcher."""

    def dispatcher(self, script: str) -> Dispatcher | None: ...


class Routes:
    """The serving versions by script name, kept by wrapping the runner."""

    def __init__(self, runner: ServingRunner, keys: KeyChecker) -> None:
        self.runner = runner
        self.keys = keys
        self.targets: dict[str, RunTarget] = {}

    def dispatcher(self, script: str) -> Dispatcher | None:
        return self.runner.dispatcher(script)

    async def start(self, target: RunTarget) -> None:
        await self.runner.start(target)  # raises RunnerError: the old version keeps serving
        self.targets[target.script] = target

    async def stop(self, script: str) -> None:
        self.targets.pop(script, None)
        self.keys.invalidate_script(script)
        await self.runner.stop(script)

    async def close(self) -> None:
        self.targets.clear()
        await self.runner.close()

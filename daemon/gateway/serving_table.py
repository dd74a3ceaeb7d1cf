"""What the gateway reads on every call: which version of a script serves, in memory.

`Routes` is the lifecycle's `Runner` (daemon/serving/target.py): it wraps the replica runner,
whose table of serving versions (`serving(script)`: target and dispatcher) the gateway
reads with one dict lookup per call (no SQLite on the hot path). Every way a script starts or stops
serving goes through the runner (deploy, redeploy, the restart's reconcile, undeploy,
delete, shutdown), so this table is invalidated exactly where the lifecycle acts.

A script that stops serving is dropped from the table before its replicas drain (new
calls get 503 at once while the running ones finish), and its API keys leave the
KeyChecker's cache (`invalidate_script`).
"""

from __future__ import annotations

from typing import Protocol

from daemon.keys.checker import KeyChecker
from daemon.serving.replica_runner import ServingVersion
from daemon.serving.target import Runner, RunTarget

__all__ = ["Routes", "ServingRunner"]


class ServingRunner(Runner, Protocol):
    """A Runner that also hands out what serves each script."""

    def serving(self, script: str) -> ServingVersion | None: ...


class Routes:
    """The serving versions by script name, kept by wrapping the runner."""

    def __init__(self, runner: ServingRunner, keys: KeyChecker) -> None:
        self.runner = runner
        self.keys = keys

    def serving(self, script: str) -> ServingVersion | None:
        return self.runner.serving(script)

    async def start(self, target: RunTarget) -> None:
        await self.runner.start(target)  # raises RunnerError: the old version keeps serving

    async def stop(self, script: str) -> None:
        self.keys.invalidate_script(script)
        await self.runner.stop(script)

    async def close(self) -> None:
        await self.runner.close()

"""The seam between the lifecycle and whatever runs a deployed version.

The lifecycle builds a version, then hands a `RunTarget` to a `Runner`. The
daemon's runner is daemon/serving/replica_runner.py's `ReplicaRunner` (pools of sandboxed
replicas), wrapped by daemon/gateway/serving_table.py's `Routes`, which keeps the gateway's
table of serving versions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from daemon.config.profiles import Profile
from daemon.core.models import AsyncSettings, EgressSettings


@dataclass(frozen=True)
class RunTarget:
    """Everything needed to run one built version of a script.

    `source_dir` holds the unpacked project (main.py / main.js at its root).
    `env_dir` is the built environment: for Python a relocatable venv (run
    `env_dir/bin/python`), for JavaScript a folder holding `node_modules/`, to be
    made visible at `<source>/node_modules` (bind mount) so `require` and `import`
    find it. Both are read-only from here on: several versions may share one
    `env_dir`. `workspace_dir` is the script's read-write folder (WORKSPACE_DIR),
    kept across versions and undeploys, removed on delete. `env` holds the user's
    environment variables with secrets in clear: never log it.
    """

    script_id: int
    script: str
    version: int
    language: str  # "python" | "javascript"
    runtime_version: str
    runtime_path: str  # the host interpreter (python3.X or node)
    source_dir: Path
    env_dir: Path
    workspace_dir: Path
    env: Mapping[str, str] = field(repr=False)  # secrets in clear: never in a repr or a log
    timeout_s: int
    functions: tuple[str, ...]
    min_replicas: int
    max_replicas: int
    cpu_target: int
    profile: Profile
    step_spec: str | None = None  # a code step: its declared inputs/outputs as JSON
    # the values of the secret environment variables: masked in execution records
    secret_values: tuple[str, ...] = field(default=(), repr=False)
    egress: EgressSettings = field(default_factory=EgressSettings)  # outbound HTTP
    # The env's secret variables (name -> value): the egress log replaces their values.
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)
    async_calls: AsyncSettings = field(default_factory=AsyncSettings)  # retries, event age
    concurrency: int = 1  # calls in flight per worker (a code step's workers run one)
    workers_per_replica: int | None = None  # None: one per whole vCPU of the profile


class RunnerError(Exception):
    """The version could not be started; str(self) is the failure reason shown."""


class Runner(Protocol):
    async def start(self, target: RunTarget) -> None:
        """Start `target`'s replicas and wait until they serve, then make it the
        script's serving version and retire the replicas of the version it
        replaces (if any). Raise RunnerError(reason) when it cannot start: the
        deploy then fails with that reason and the previous version keeps
        serving. Called again for every Deployed script when the daemon starts."""
        ...

    async def stop(self, script: str) -> None:
        """Stop every replica of the script (undeploy, delete). Idempotent."""
        ...

    async def close(self) -> None:
        """Stop everything: the daemon is shutting down."""
        ...

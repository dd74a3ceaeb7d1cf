"""The plain typed objects the store hands out and the lifecycle passes around.

All frozen: a changed script is a new object from the store. Statuses are the
seed's words, written exactly. Times are ISO-8601 UTC strings ending in Z.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

# Script statuses (DESIGN.md's table).
DRAFT = "Draft"
DEPLOYING = "Deploying"
READY = "Ready to Deploy"
DEPLOYED = "Deployed"
FAILED = "Deployment Failed"
SCRIPT_STATUSES = (DRAFT, DEPLOYING, READY, DEPLOYED, FAILED)

# Version (deployment) statuses and build phases.
V_DEPLOYING = "Deploying"
V_DEPLOYED = "Deployed"
V_FAILED = "Deployment Failed"
V_UNDEPLOYED = "Undeployed"
V_SUPERSEDED = "Superseded"
PHASES = ("unpacking", "building", "starting", "done")

# Each base language and its main file: the one table of languages.
MAIN_FILES = {"python": "main.py", "javascript": "main.js"}
LANGUAGES = tuple(MAIN_FILES)
SCRIPT_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{1,62}$")
# Version display names: same shape as script names (they appear in URLs and
# tables), unique within their script.
DISPLAY_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{1,62}$")
ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
MASK = "********"


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_iso(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


@dataclass(frozen=True)
class Sealed:
    """A secret value as the store keeps it: AES-GCM ciphertext (nonce first) bound to
    its variable's name (daemon/store/secret_box.py). Only the deployer opens it, to
    hand the value to a replica; everything else carries it unopened."""

    blob: bytes = field(repr=False)


@dataclass(frozen=True)
class EnvVar:
    """A secret's value is a `str` as a request brings it, and `Sealed` once stored."""

    key: str
    value: str | Sealed
    secret: bool = False

    def to_json(self, reveal: bool = False) -> dict[str, Any]:
        # A sealed value is never shown, revealed or not: only its replica opens it.
        hidden = self.secret and not (reveal and isinstance(self.value, str))
        return {"key": self.key, "value": MASK if hidden else self.value, "secret": self.secret}


@dataclass(frozen=True)
class EgressSettings:
    """A script's outbound HTTP: `policy` off | public | allowlist (None: the daemon's
    egress.default_policy), the allowlist's host patterns, and whether HTTPS is
    intercepted (and so logged request by request)."""

    policy: str | None = None
    allow_hosts: tuple[str, ...] = ()
    inspect: bool = True

    def to_json(self) -> dict[str, Any]:
        return {"policy": self.policy, "allow_hosts": list(self.allow_hosts),
                "inspect": self.inspect}  # fmt: skip

    @classmethod
    def from_json(cls, doc: dict[str, Any] | None) -> EgressSettings:
        if not doc:
            return cls()
        return cls(doc.get("policy"), tuple(doc.get("allow_hosts", ())), doc.get("inspect", True))


MAX_ASYNC_RETRIES = 2
DEFAULT_MAX_EVENT_AGE_S = 6 * 3600
MAX_EVENT_AGE_RANGE_S = (1, 7 * 86400)


@dataclass(frozen=True)
class AsyncSettings:
    """Asynchronous calls of a script (`Prefer: respond-async`): how many times a
    failed attempt is tried again (0-2: these scripts call other systems, so none by
    default), and how long an accepted call may wait before it is marked expired."""

    retries: int = 0
    max_event_age_s: int = DEFAULT_MAX_EVENT_AGE_S

    def to_json(self) -> dict[str, Any]:
        return {"retries": self.retries, "max_event_age_s": self.max_event_age_s}

    @classmethod
    def from_json(cls, doc: dict[str, Any] | None) -> AsyncSettings:
        if not doc:
            return cls()
        return cls(doc.get("retries", 0), doc.get("max_event_age_s", DEFAULT_MAX_EVENT_AGE_S))


@dataclass(frozen=True)
class StepSpec:
    """A code step's declared inputs and outputs, (name, type code) in declaration
    order (from its step.toml: daemon/archive/steps.py checks them)."""

    inputs: tuple[tuple[str, str], ...]
    outputs: tuple[tuple[str, str], ...]

    def to_json(self) -> dict[str, dict[str, str]]:
        return {"inputs": dict(self.inputs), "outputs": dict(self.outputs)}

    def json_text(self) -> str:
        return json.dumps(self.to_json(), separators=(",", ":"))

    @classmethod
    def from_json(cls, doc: dict[str, Any] | None) -> StepSpec | None:
        if doc is None:
            return None
        return cls(tuple(doc.get("inputs", {}).items()), tuple(doc.get("outputs", {}).items()))


CONCURRENCY_RANGE = (1, 64)  # calls in flight per worker
WORKERS_PER_REPLICA_RANGE = (1, 16)  # None: one per whole vCPU of the profile


@dataclass(frozen=True)
class Settings:
    env: tuple[EnvVar, ...]
    timeout_s: int
    egress: EgressSettings = field(default_factory=EgressSettings)
    # names of the account's secrets granted to the script (its env vars of those names)
    secrets: tuple[str, ...] = ()
    # a code step's declared inputs and outputs (its step.toml); None: functions
    step: StepSpec | None = None
    async_calls: AsyncSettings = field(default_factory=AsyncSettings)
    concurrency: int = 1  # calls in flight per worker (a code step's workers run one)
    workers_per_replica: int | None = None  # None: one per whole vCPU of the profile

    @property
    def kind(self) -> str:
        return "functions" if self.step is None else "step"

    def to_json(self, reveal: bool = False) -> dict[str, Any]:
        return {
            "env": [e.to_json(reveal) for e in self.env],
            "timeout_s": self.timeout_s,
            "egress": self.egress.to_json(),
            "secrets": list(self.secrets),
            "kind": self.kind,
            "step": self.step.to_json() if self.step else None,
            "async": self.async_calls.to_json(),
            "concurrency": self.concurrency,
            "workers_per_replica": self.workers_per_replica,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Settings:
        env = tuple(EnvVar(e["key"], e["value"], e["secret"]) for e in doc["env"])
        egress = EgressSettings.from_json(doc.get("egress"))  # absent in older snapshots
        secrets = tuple(doc.get("secrets", ()))  # absent in older snapshots too
        step = StepSpec.from_json(doc.get("step"))  # and this one
        async_calls = AsyncSettings.from_json(doc.get("async"))  # and this one
        concurrency = doc.get("concurrency", 1)  # and these two
        workers = doc.get("workers_per_replica")
        return cls(env, doc["timeout_s"], egress, secrets, step, async_calls, concurrency, workers)


@dataclass(frozen=True)
class Resources:
    min_replicas: int = 1
    max_replicas: int = 1
    cpu_target: int = 75
    profile: str = ""
    # a replica's memory limit below its profile's (a code step's default limit,
    # steps.memory_mib); None: the profile's memory
    memory_bytes: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "min_replicas": self.min_replicas,
            "max_replicas": self.max_replicas,
            "cpu_target": self.cpu_target,
            "profile": self.profile,
            "memory_bytes": self.memory_bytes,
        }


@dataclass(frozen=True)
class ArchiveRef:
    """The project archive a script holds (content-addressed in the script's dir)."""

    filename: str  # as uploaded, for people
    sha256: str
    size: int
    path: str  # absolute path of the stored copy

    def to_json(self, reveal: bool = False) -> dict[str, Any]:
        """`reveal` adds the stored copy's path (the daemon's business, not a user's)."""
        shown = {"filename": self.filename, "sha256": self.sha256, "size": self.size}
        return {**shown, "path": self.path} if reveal else shown


@dataclass(frozen=True)
class Script:
    id: int
    name: str
    description: str
    language: str
    language_version: str
    status: str
    added_by: str
    created_at: str
    updated_at: str
    settings: Settings
    resources: Resources
    archive: ArchiveRef
    functions: tuple[str, ...]
    current_version: int | None  # the version that serves (or would), None if none


@dataclass(frozen=True)
class VersionSnapshot:
    """What a version is built and run from, frozen when the version is made: the
    script's settings at that moment and the interpreter picked for it. Stored as JSON
    with secret values sealed (the deployer opens them for the runner); `to_json()`
    without `reveal` is what people see: secrets masked, the archive's stored path
    left out."""

    description: str
    language: str
    language_version: str
    runtime_path: str  # the interpreter picked at deploy time ("" if the host had none)
    settings: Settings
    resources: Resources
    archive: ArchiveRef
    functions: tuple[str, ...]

    @classmethod
    def of(cls, script: Script, runtime_path: str) -> VersionSnapshot:
        return cls(
            description=script.description,
            language=script.language,
            language_version=script.language_version,
            runtime_path=runtime_path,
            settings=script.settings,
            resources=script.resources,
            archive=script.archive,
            functions=script.functions,
        )

    def applied_to(self, script: Script) -> Script:
        """The script as this snapshot describes it (what a rollback restores)."""
        return replace(
            script,
            description=self.description,
            settings=self.settings,
            resources=self.resources,
            archive=self.archive,
            functions=self.functions,
        )

    def to_json(self, reveal: bool = False) -> dict[str, Any]:
        return {
            "description": self.description,
            "language": self.language,
            "language_version": self.language_version,
            "runtime_path": self.runtime_path,
            "settings": self.settings.to_json(reveal),
            "resources": self.resources.to_json(),
            "archive": self.archive.to_json(reveal),
            "functions": list(self.functions),
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> VersionSnapshot:
        return cls(
            description=doc["description"],
            language=doc["language"],
            language_version=doc["language_version"],
            runtime_path=doc["runtime_path"],
            settings=Settings.from_json(doc["settings"]),
            resources=Resources(**doc["resources"]),
            archive=ArchiveRef(**doc["archive"]),
            functions=tuple(doc["functions"]),
        )


@dataclass(frozen=True)
class Version:
    id: int
    script_id: int
    number: int
    display_name: str
    status: str
    phase: str
    deployed_by: str
    started_at: str
    ended_at: str | None
    failure_reason: str | None
    config: VersionSnapshot  # secret values sealed; show it with to_json()
    env_key: str | None = None
    undeployed_by: str | None = None
    undeployed_at: str | None = None

    @property
    def duration_s(self) -> float | None:
        if self.ended_at is None:
            return None
        delta = parse_iso(self.ended_at) - parse_iso(self.started_at)
        return round(delta.total_seconds(), 3)


@dataclass(frozen=True)
class Event:
    id: int
    script_id: int
    at: str
    kind: str
    actor: str
    detail: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"at": self.at, "kind": self.kind, "actor": self.actor, "detail": self.detail}

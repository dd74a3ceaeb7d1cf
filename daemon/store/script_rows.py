"""Scripts, versions and events as the store's rows: the columns a Script is
written as (its secret values sealed) and the frozen objects rows are read back as."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from daemon.core.models import (
    ArchiveRef,
    AsyncSettings,
    EgressSettings,
    Event,
    Resources,
    Script,
    Settings,
    StepSpec,
    Version,
    VersionSnapshot,
)
from daemon.store.sealed_env import env_rows, env_vars, loaded_value, stored_value
from daemon.store.secret_box import SecretBox

VERSION_COLUMNS = (
    "script_id", "number", "display_name", "status", "phase", "deployed_by", "started_at",
    "ended_at", "failure_reason", "config_json", "env_key", "undeployed_by", "undeployed_at",
)  # fmt: skip


def dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def script_columns(script: Script, box: SecretBox) -> dict[str, Any]:
    """A Script as column values (the inverse of script_from_row), secret values sealed."""
    return {
        "name": script.name,
        "description": script.description,
        "language": script.language,
        "language_version": script.language_version,
        "status": script.status,
        "added_by": script.added_by,
        "created_at": script.created_at,
        "updated_at": script.updated_at,
        "env_json": dumps(env_rows(box, script.settings.env)),
        "timeout_s": script.settings.timeout_s,
        "egress_json": dumps(script.settings.egress.to_json()),
        "secrets_json": dumps(list(script.settings.secrets)),
        "async_json": dumps(script.settings.async_calls.to_json()),
        "concurrency": script.settings.concurrency,
        "workers_per_replica": script.settings.workers_per_replica,
        "min_replicas": script.resources.min_replicas,
        "max_replicas": script.resources.max_replicas,
        "cpu_target": script.resources.cpu_target,
        "profile": script.resources.profile,
        "step_json": dumps(script.settings.step.to_json()) if script.settings.step else None,
        "memory_bytes": script.resources.memory_bytes,
        "archive_json": dumps(script.archive.__dict__),
        "functions_json": dumps(list(script.functions)),
        "current_version": script.current_version,
    }


def script_from_row(row: Mapping[str, Any]) -> Script:
    env = env_vars(orjson.loads(row["env_json"]))
    return Script(
        id=row["id"],
        name=row["name"],
        description=row["description"],
        language=row["language"],
        language_version=row["language_version"],
        status=row["status"],
        added_by=row["added_by"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        settings=Settings(
            env=env,
            timeout_s=row["timeout_s"],
            egress=EgressSettings.from_json(orjson.loads(row["egress_json"])),
            secrets=tuple(orjson.loads(row["secrets_json"])),
            step=StepSpec.from_json(orjson.loads(row["step_json"]) if row["step_json"] else None),
            async_calls=AsyncSettings.from_json(orjson.loads(row["async_json"])),
            concurrency=row["concurrency"],
            workers_per_replica=row["workers_per_replica"],
        ),
        resources=Resources(
            row["min_replicas"],
            row["max_replicas"],
            row["cpu_target"],
            row["profile"],
            row["memory_bytes"],
        ),
        archive=ArchiveRef(**orjson.loads(row["archive_json"])),
        functions=tuple(orjson.loads(row["functions_json"])),
        current_version=row["current_version"],
    )


def version_from_row(row: Mapping[str, Any]) -> Version:
    fields = {k: row[k] for k in VERSION_COLUMNS if k != "config_json"}
    doc = orjson.loads(row["config_json"])
    for item in doc["settings"]["env"]:
        item["value"] = loaded_value(item["value"])
    return Version(id=row["id"], config=VersionSnapshot.from_json(doc), **fields)


def config_json(config: VersionSnapshot, box: SecretBox) -> str:
    """A version's snapshot as stored: in full (the archive's path too), secrets sealed."""
    doc = config.to_json(reveal=True)
    for item, var in zip(doc["settings"]["env"], config.settings.env, strict=True):
        item["value"] = stored_value(box, var)
    return dumps(doc)


def event_from_row(row: Mapping[str, Any]) -> Event:
    detail = orjson.loads(row["detail_json"])
    return Event(row["id"], row["script_id"], row["at"], row["kind"], row["actor"], detail)

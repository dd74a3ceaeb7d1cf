"""The JSON shapes of the admin API (CONTRACTS.md), built from store objects.

Secret values never reach these: the store hands them out sealed (only the
deployer opens them, for a replica), and every view masks them as `********`.
"""

from __future__ import annotations

from typing import Any

from daemon.core.models import Script, Version


def summary_json(s: Script) -> dict[str, Any]:
    return {
        "name": s.name,
        "status": s.status,
        "added_by": s.added_by,
        "updated_at": s.updated_at,
        "language": s.language,
    }


def version_json(v: Version) -> dict[str, Any]:
    return {
        "number": v.number,
        "display_name": v.display_name,
        "status": v.status,
        "phase": v.phase,
        "deployed_by": v.deployed_by,
        "started_at": v.started_at,
        "ended_at": v.ended_at,
        "duration_s": v.duration_s,
        "failure_reason": v.failure_reason,
        "undeployed_by": v.undeployed_by,
        "undeployed_at": v.undeployed_at,
        "config": v.config.to_json(),
    }


def script_json(s: Script, deployment: Version | None) -> dict[str, Any]:
    return {
        "name": s.name,
        "description": s.description,
        "language": s.language,
        "language_version": s.language_version,
        "status": s.status,
        "added_by": s.added_by,
        "created_at": s.created_at,
        "updated_at": s.updated_at,
        "settings": s.settings.to_json(),
        "resources": s.resources.to_json(),
        "archive": s.archive.to_json(),
        "functions": list(s.functions),
        "current_version": s.current_version,
        "deployment": version_json(deployment) if deployment else None,
    }

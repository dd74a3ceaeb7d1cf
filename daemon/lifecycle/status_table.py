"""DESIGN.md's status table: what each script status allows, and the refusal that names the
status and what it allows.
"""

from __future__ import annotations

from daemon.core.errors import Conflict
from daemon.core.models import (
    DEPLOYED,
    DEPLOYING,
    DRAFT,
    FAILED,
    READY,
    Script,
)

# status -> the actions it allows (DESIGN.md), for refusals that say what is possible.
ALLOWS: dict[str, tuple[str, ...]] = {
    DRAFT: ("update", "export", "delete", "deploy"),
    DEPLOYING: ("export", "delete (cancels the deploy)", "rename-version"),
    READY: ("update", "export", "delete", "deploy", "rename-version"),
    DEPLOYED: ("export", "redeploy", "undeploy", "rename-version"),
    FAILED: ("update", "export", "delete", "deploy", "rename-version"),
}


REDEPLOY_FIELDS = frozenset(
    {"description", "archive_id", "env", "timeout_s", "secrets", "egress", "async"}
    | {"concurrency", "workers_per_replica"}
    | {"min_replicas", "max_replicas", "cpu_target", "profile"}
)


def refuse(script: Script, action: str, hint: str = "") -> Conflict:
    allowed = ", ".join(ALLOWS[script.status])
    extra = f" ({hint})" if hint else ""
    return Conflict(
        f"cannot {action} script {script.name!r}: it is {script.status}{extra}; "
        f"{script.status} allows: {allowed}",
        status=script.status,
        allowed=list(ALLOWS[script.status]),
    )


def allows(status: str, action: str) -> bool:
    """Whether a script in `status` allows `action` ("delete" matches "delete (cancels
    the deploy)"): what a menu or a button offers."""
    return any(a == action or a.startswith(action + " ") for a in ALLOWS.get(status, ()))

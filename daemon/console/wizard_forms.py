"""The import wizard's forms read into the admin API's create body, a step at a time.

Each step's fields are checked with the lifecycle's own request checks
(daemon/lifecycle/request_checks.py), so a value the wizard accepts is one the create
accepts, and a refusal names the field as the admin API does.
"""

from __future__ import annotations

from typing import Any

from multidict import MultiDictProxy

from daemon.config.daemon_config import Config
from daemon.core.models import DRAFT, MASK, Script
from daemon.lifecycle import request_checks

__all__ = [
    "STEPS", "env_rows", "from_script", "general_fields", "resources_body", "runtime_body",
    "script_body",
]  # fmt: skip

# In order; the seed: "perform each step in order without skipping any".
STEPS = (
    ("general", "General Details"),
    ("validate", "Validate"),
    ("runtime", "Runtime Settings"),
    ("resources", "Resource Allocation"),
    ("review", "Review"),
)
EGRESS_CHOICES = ("", "off", "public", "allowlist")


def env_rows(form: MultiDictProxy[Any]) -> list[dict[str, Any]]:
    """The key/value rows as typed, with their secret flags (row i: env_secret_i)."""
    keys, values = form.getall("env_key", []), form.getall("env_value", [])
    rows = []
    for i, (key, value) in enumerate(zip(keys, values, strict=False)):
        rows.append(
            {"key": str(key).strip(), "value": str(value), "secret": f"env_secret_{i}" in form}
        )
    return rows


def runtime_body(
    form: MultiDictProxy[Any], rows: list[dict[str, Any]], config: Config, kind: str = "functions"
) -> dict[str, Any]:
    """The Runtime Settings step as create fields, checked (BadRequest names the field).
    A code step (`kind` step) runs one execution at a time: its concurrency is 1."""
    body: dict[str, Any] = {"env": [r for r in rows if r["key"] or r["value"]]}
    body["timeout_s"] = _number("timeout_s", form.get("timeout_s", ""))
    body["concurrency"] = 1 if kind == "step" else _number(
        "concurrency", form.get("concurrency", "1")
    )  # fmt: skip
    workers = str(form.get("workers_per_replica", "")).strip()  # empty: one per whole vCPU
    body["workers_per_replica"] = _number("workers_per_replica", workers) if workers else None
    policy = str(form.get("egress_policy", ""))
    hosts = [h.strip() for h in str(form.get("allow_hosts", "")).splitlines() if h.strip()]
    if policy:
        body["egress"] = {"policy": policy, "allow_hosts": hosts}
    # always sent: unticking every secret of a script revokes them
    body["secrets"] = [str(s) for s in form.getall("secrets", [])]
    request_checks.settings(body, request_checks.default_settings(config), config)
    return body


def resources_body(form: MultiDictProxy[Any], config: Config) -> dict[str, Any]:
    """The Resource Allocation step as create fields, checked."""
    body: dict[str, Any] = {
        "min_replicas": _number("min_replicas", form.get("min_replicas", "")),
        "max_replicas": _number("max_replicas", form.get("max_replicas", "")),
        "profile": str(form.get("profile", "")) or config.default_profile.name,
    }
    if body["min_replicas"] != body["max_replicas"]:  # ignored (disabled) when min = max
        body["cpu_target"] = _number("cpu_target", form.get("cpu_target", ""))
    request_checks.resources(body, request_checks.default_resources(config), config)
    return body


def _number(field: str, text: object) -> int:
    raw = str(text).strip()
    if not raw.lstrip("-").isdigit():
        raise request_checks.BadRequest(
            f"{field} = {raw!r} is not allowed: a whole number", field=field
        )
    return int(raw)


def general_fields(fields: dict[str, str], locked: bool) -> dict[str, str]:
    """The General Details a person may change: not name, language and version when
    they are locked (a redeploy, or an edit of a script that was deployed once)."""
    keys = ["description", "kind"] + ([] if locked else ["name", "language", "version"])
    return {k: fields.get(k, "").strip() for k in keys}


def script_body(state: dict[str, Any]) -> dict[str, Any]:
    """The wizard's answers as the admin API's create / update / redeploy body."""
    general = state["general"]
    body: dict[str, Any] = {
        "description": general["description"], **state["runtime"], **state["resources"],
    }  # fmt: skip
    if "archive_id" in general:
        body["archive_id"] = general["archive_id"]
    if state.get("locked"):
        return body
    body.update(name=general["name"], language=general["language"])
    if general.get("version"):
        body["language_version"] = general["version"]
    return body


def from_script(script: Script, mode: str) -> dict[str, Any]:
    """The wizard's answers for a redeploy or an edit (`mode`): the script's
    configuration, its secret values masked (sent back masked, they keep their value).
    Name, language and version stay locked unless an edit of a Draft."""
    settings, res = script.settings, script.resources
    rows = [{"key": e.key, "value": MASK if e.secret else e.value, "secret": e.secret}
            for e in settings.env] or [{"key": "", "value": "", "secret": False}]  # fmt: skip
    egress = settings.egress
    return {
        "mode": mode, "target": script.name, "status": script.status,
        "locked": mode == "redeploy" or script.status != DRAFT,
        "general": {
            "name": script.name, "description": script.description,
            "language": script.language, "version": script.language_version,
            "kind": settings.kind, "kept_kind": settings.kind, "kept_language": script.language,
            "filename": script.archive.filename, "size": script.archive.size,
        },
        "step": settings.step.to_json() if settings.step else None,
        "rows": rows,
        "secrets": list(settings.secrets),
        "runtime_form": {
            "timeout_s": str(settings.timeout_s), "egress_policy": egress.policy or "",
            "allow_hosts": "\n".join(egress.allow_hosts),
            "concurrency": str(settings.concurrency),
            "workers_per_replica": str(settings.workers_per_replica or ""),
        },
        "resources_form": {
            "min_replicas": str(res.min_replicas), "max_replicas": str(res.max_replicas),
            "cpu_target": str(res.cpu_target), "profile": res.profile,
        },
        "done": [],
    }  # fmt: skip

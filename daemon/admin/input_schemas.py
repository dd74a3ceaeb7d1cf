"""The admin API's request bodies and query values as JSON Schema, exactly as the
handlers check them (daemon/lifecycle/request_checks.py and the route modules):
required fields, lengths, patterns, ranges, and no field a route does not take
(`additionalProperties: false`). Merged into `GET /openapi.json` by
daemon/admin/openapi.py; `with_config` fills in what the daemon's config decides
(the timeout range, the profiles).

What a schema cannot say is left to the handler's 400: a key listed twice in env,
an env key that is also a granted secret, min_replicas above max_replicas, an
allowlist without hosts, a new language without a new archive, a key name of
characters that do not print (past the control characters).
"""

from __future__ import annotations

import copy
from typing import Any

from daemon.config.daemon_config import Config
from daemon.config.egress import EGRESS_POLICIES
from daemon.core.models import (
    CONCURRENCY_RANGE,
    DISPLAY_NAME_RE,
    ENV_KEY_RE,
    LANGUAGES,
    MAX_ASYNC_RETRIES,
    MAX_EVENT_AGE_RANGE_S,
    SCRIPT_NAME_RE,
    WORKERS_PER_REPLICA_RANGE,
)
from daemon.keys.api_key import KEY_NAME_MAX
from daemon.lifecycle.request_checks import MAX_DESCRIPTION, MAX_ENV_VALUE, MAX_ENV_VARS
from daemon.lifecycle.status_table import REDEPLOY_FIELDS

__all__ = ["FILE_NAME", "INPUT_QUERY", "INPUT_SCHEMAS", "NAME", "path_schema", "with_config"]

S = dict[str, Any]
STR, BOOL = {"type": "string"}, {"type": "boolean"}


def _int(lo: int, hi: int) -> S:
    return {"type": "integer", "minimum": lo, "maximum": hi}


def _closed(props: S, required: tuple[str, ...] = ()) -> S:
    return {"type": "object", "properties": props, "required": list(required),
            "additionalProperties": False}  # fmt: skip


NAME = {**STR, "pattern": SCRIPT_NAME_RE.pattern}
ENV_KEY = {**STR, "pattern": ENV_KEY_RE.pattern}
ARCHIVE_ID = {**STR, "pattern": "^[A-Za-z0-9]{1,64}$", "description": "from POST /v1/archives"}
PORT = "(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})"
HOST_PATTERN = {
    **STR,
    "pattern": rf"^(\*\.)?[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:{PORT})?$",
    "description": "a host name or *.domain wildcard, either with :port",
}
_PRINTS = "[^\\x00-\\x1f\\x7f-\\x9f]"  # not a control character
KEY_NAME = f"^{_PRINTS}*[^\\s\\x00-\\x1f\\x7f-\\x9f]{_PRINTS}*$"  # and not blank
ENV = _closed(
    {"key": ENV_KEY,
     "value": {**STR, "maxLength": MAX_ENV_VALUE, "pattern": "^[^\\x00]*$"},
     "secret": {**BOOL, "description": 'sent back as "********" it keeps its value'}},
    ("key",),
)  # fmt: skip
SCRIPT_FIELDS: S = {
    "name": NAME,
    "description": {**STR, "maxLength": MAX_DESCRIPTION},
    "language": {"enum": list(LANGUAGES)},
    "language_version": {**STR, "description": "an interpreter of this host (404 if not)"},
    "archive_id": ARCHIVE_ID,
    "env": {"type": "array", "items": ENV, "maxItems": MAX_ENV_VARS},
    "timeout_s": _int(1, 86400),  # with_config: the configured range
    "secrets": {"type": "array", "items": ENV_KEY, "maxItems": MAX_ENV_VARS,
                "description": "granted secrets, by name (404 for one not set)"},
    "egress": _closed({"policy": {"enum": list(EGRESS_POLICIES)},
                       "allow_hosts": {"type": "array", "items": HOST_PATTERN},
                       "inspect": BOOL}),
    "async": _closed({"retries": _int(0, MAX_ASYNC_RETRIES),
                      "max_event_age_s": _int(*MAX_EVENT_AGE_RANGE_S)}),
    "concurrency": {**_int(*CONCURRENCY_RANGE), "description": "calls in flight per worker"},
    "workers_per_replica": {
        "type": ["integer", "null"], "minimum": WORKERS_PER_REPLICA_RANGE[0],
        "maximum": WORKERS_PER_REPLICA_RANGE[1],
        "description": "worker processes per replica; null: one per whole vCPU",
    },
    "min_replicas": _int(1, 10),
    "max_replicas": _int(1, 10),
    "cpu_target": _int(1, 100),
    "profile": STR,  # with_config: the configured profiles
    "deploy": BOOL,
}  # fmt: skip
INPUT_SCHEMAS: dict[str, S] = {
    "ScriptCreate": _closed(SCRIPT_FIELDS, ("name", "language", "archive_id")),
    "ScriptUpdate": _closed({k: v for k, v in SCRIPT_FIELDS.items() if k != "deploy"}),
    "ScriptRedeploy": _closed({k: v for k, v in SCRIPT_FIELDS.items() if k in REDEPLOY_FIELDS}),
    "Validate": _closed({"archive_id": ARCHIVE_ID, "language": {"enum": list(LANGUAGES)}},
                        ("archive_id",)),
    "Rename": _closed({"display_name": {**STR, "pattern": DISPLAY_NAME_RE.pattern}},
                      ("display_name",)),
    "KeyInput": _closed({"name": {
        **STR, "minLength": 1, "maxLength": KEY_NAME_MAX, "pattern": KEY_NAME,
        "description": "printable characters (trimmed); default 'Secret Key'"}}),
    "AccountInput": _closed(
        {"allocation": {"type": "number", "minimum": 0, "maximum": 10**9},
         "reset": {**BOOL, "description": "balance = allocation (else it moves by the change)"}},
        ("allocation",),
    ),
    "SecretInput": _closed(
        {"value": {**STR, "minLength": 1, "maxLength": MAX_ENV_VALUE,
                   "description": "kept encrypted, never returned"}},
        ("value",),
    ),
}  # fmt: skip
AGE = "^\\s*[0-9]+(\\.[0-9]+)?\\s*[smhdw]\\s*$"
INPUT_QUERY: dict[str, S] = {
    "since": {**STR, "pattern": "^([0-9]+[smhd]|[0-9]{4}-[\\s\\S]{5,}|)$",
              "description": "a duration back from now (30s, 15m, 1h, 2d) or an ISO time"},
    "usage.since": {"anyOf": [{**STR, "pattern": AGE}, {"const": ""}, {**STR, "format": "date"},
                              {**STR, "format": "date-time"}],
                    "description": "an ISO-8601 time, or an age: 7d, 24h, 30m"},
}  # fmt: skip
FILE_NAME = {**STR, "pattern": "^(?!.*[.][.])[A-Za-z0-9][A-Za-z0-9._-]{0,254}$"}
VERSION_NUMBER = _int(1, 2**31 - 1)


def path_schema(path: str, name: str) -> S:
    """The schema of the path parameter `name` of the route at `path`."""
    if name == "name":
        return ENV_KEY if path.startswith("/v1/secrets/") else NAME
    return {"number": VERSION_NUMBER, "filename": FILE_NAME}.get(name, STR)


def with_config(schemas: dict[str, S], config: Config | None) -> dict[str, S]:
    """`schemas` with the ranges this daemon's config sets (a copy; as is without one)."""
    if config is None:
        return schemas
    out = copy.deepcopy(schemas)
    for name in ("ScriptCreate", "ScriptUpdate", "ScriptRedeploy"):
        props = out[name]["properties"]
        props["timeout_s"] = _int(config.timeout_min_s, config.timeout_max_s)
        props["profile"] = {"enum": [p.name for p in config.profiles]}
    return out

"""The OpenAPI 3.1 description of the admin API, generated from its route table.

Schemas are written here once, by name; each `Route` names its request and
response schema (or a media type: "binary", "zip", "text"), so a route cannot be
added without appearing in `GET /openapi.json`.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from daemon.admin.input_schemas import (
    FILE_NAME,
    INPUT_QUERY,
    INPUT_SCHEMAS,
    path_schema,
    with_config,
)
from daemon.admin.schemas import (
    ACCOUNT_QUERY,
    ACCOUNT_SCHEMAS,
    ASYNC_QUERY,
    ASYNC_SCHEMAS,
    SECRET_SCHEMAS,
)
from daemon.config.daemon_config import Config

S = dict[str, Any]


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Callable[..., Awaitable[Any]]
    summary: str
    request: str | None
    response: str
    status: int = 200
    # optional query parameters, by their key in QUERY_SCHEMAS: the parameter's name, or
    # "route.name" where routes give one name different types (notifications.status)
    query: tuple[str, ...] = ()


def _obj(props: S, required: tuple[str, ...] = ()) -> S:
    return {"type": "object", "properties": props, "required": list(required)}


def _ref(name: str) -> S:
    return {"$ref": f"#/components/schemas/{name}"}


STR, INT, NUM, BOOL = (
    {"type": "string"},
    {"type": "integer"},
    {"type": "number"},
    {"type": "boolean"},
)
NULL_STR = {"type": ["string", "null"]}
ENV = _obj({"key": STR, "value": STR, "secret": BOOL}, ("key",))
SECRET_NAMES = {"type": "array", "items": STR, "description": "granted secrets, by name"}
CONCURRENCY = {**INT, "minimum": 1, "maximum": 64, "description": "calls in flight per worker"}
WORKERS_PER_REPLICA = {
    "type": ["integer", "null"],
    "minimum": 1,
    "maximum": 16,
    "description": "worker processes per replica; null: one per whole vCPU",
}
SETTINGS = _obj(
    {
        "env": {"type": "array", "items": ENV},
        "timeout_s": INT,
        "secrets": SECRET_NAMES,
        "concurrency": CONCURRENCY,
        "workers_per_replica": WORKERS_PER_REPLICA,
    }
)
RESOURCES = _obj(
    {
        "min_replicas": {**INT, "minimum": 1, "maximum": 10},
        "max_replicas": {**INT, "minimum": 1, "maximum": 10},
        "cpu_target": {**INT, "minimum": 1, "maximum": 100},
        "profile": STR,
    }
)
VERSION = _obj(
    {
        "number": INT,
        "display_name": STR,
        "status": {
            "enum": ["Deploying", "Deployed", "Deployment Failed", "Undeployed", "Superseded"]
        },
        "phase": {"enum": ["unpacking", "building", "starting", "done"]},
        "deployed_by": STR,
        "started_at": STR,
        "ended_at": NULL_STR,
        "duration_s": {"type": ["number", "null"]},
        "failure_reason": NULL_STR,
        "undeployed_by": NULL_STR,
        "undeployed_at": NULL_STR,
        "config": {"type": "object"},
    }
)
EGRESS_COUNTERS = _obj(
    {
        "bytes_out": INT,
        "bytes_in": INT,
        "open_connections": INT,
        "idle_connections": INT,
        "connections": INT,
    }
)
REPLICA = _obj(
    {
        "name": STR,
        "state": {"enum": ["starting", "ready", "draining", "stopped"]},
        "busy": INT,
        "egress": {"oneOf": [EGRESS_COUNTERS, {"type": "null"}]},
    }
)
SCRIPT = _obj(
    {
        "name": STR,
        "description": STR,
        "language": {"enum": ["python", "javascript"]},
        "language_version": STR,
        "status": {
            "enum": ["Draft", "Deploying", "Ready to Deploy", "Deployed", "Deployment Failed"]
        },
        "added_by": STR,
        "created_at": STR,
        "updated_at": STR,
        "settings": SETTINGS,
        "resources": RESOURCES,
        "archive": _obj({"filename": STR, "sha256": STR, "size": INT}),
        "functions": {"type": "array", "items": STR},
        "current_version": {"type": ["integer", "null"]},
        "deployment": {"oneOf": [VERSION, {"type": "null"}]},
        "replicas": {"type": "array", "items": REPLICA},
    }
)
KEY = _obj({"id": STR, "name": STR, "created_by": STR, "created_at": STR, "last_used_at": NULL_STR})
EXECUTION = _obj(
    {
        "script": STR,
        "id": STR,
        "version": INT,
        "function": STR,
        "key_name": NULL_STR,
        "status": {"enum": ["ok", "error", "timeout", "oom", "crashed", "rejected"]},
        "received_at": STR,
        "started_at": NULL_STR,
        "ended_at": NULL_STR,
        "queue_ms": {"type": ["number", "null"]},
        "wall_ms": {"type": ["number", "null"]},
        "cpu_ms": {"type": ["number", "null"]},
        "peak_memory_bytes": {"type": ["integer", "null"]},
        "input_bytes": {"type": ["integer", "null"]},
        "result": {},
        "error": {"type": ["object", "null"]},
        "logs": NULL_STR,
        "http_log": {"type": ["object", "null"], "description": "the call's outbound HTTP"},
        "details": {"type": ["object", "null"]},
    },
    ("script", "id", "version", "function", "status", "received_at"),
)
FILE = _obj({"name": STR, "size": INT, "modified_at": STR})
TYPED = {"type": "object", "description": 'typed values by name, e.g. {"name": {"s": "Ada"}}'}
LOG = _obj({"ts": STR, "message": STR})
TRY_SCHEMAS: dict[str, S] = {
    "StepRun": _obj({"inputs": TYPED}),
    "StepResult": _obj(
        {
            "outputs": TYPED,
            "execution_id": STR,
            "error": {"type": "object", "description": "422: the step raised (partial outputs)"},
            "logs": {"type": "array", "items": LOG},
            "logs_discarded": INT,
            "stdout": STR,
            "stderr": STR,
        },
        ("outputs", "execution_id"),
    ),
    "Payload": {"type": "object", "description": "the function's keyword arguments"},
    "CallResult": _obj({"result": {}}),
}
CALL_SCHEMAS: dict[str, S] = {
    "NewKey": _obj(
        {
            **KEY["properties"],
            "script": STR,
            "key": {**STR, "description": "the whole key, shown only in this answer"},
        }
    ),
    "KeyList": _obj({"script": STR, "keys": {"type": "array", "items": KEY}}),
    "KeyDeleted": _obj({"deleted": STR, "id": STR, "script": STR}),
    "Endpoint": _obj(
        {
            "script": STR,
            "base_url": STR,
            "key_placeholder": STR,
            "formats": {"type": "array", "items": {"enum": ["curl", "javascript", "python"]}},
            "functions": {
                "type": "array",
                "items": _obj(
                    {
                        "function": STR,
                        "url": STR,
                        "curl": STR,
                        "javascript": STR,
                        "python": STR,
                        "parameters": {"type": "object", "description": "JSON Schema of the body"},
                    }
                ),
            },
            "text": STR,
        }
    ),
    "ExecutionList": _obj({"script": STR, "executions": {"type": "array", "items": EXECUTION}}),
    "Execution": {
        "oneOf": [EXECUTION, _ref("AsyncCall")],
        "description": "a call's execution record, or an asynchronous call",
    },
    "FileList": _obj({"files": {"type": "array", "items": FILE}}),
    "Logs": _obj(
        {
            "script": STR,
            "replicas": {
                "type": "array",
                "items": _obj(
                    {"replica": STR, "running": BOOL, "bytes": INT, "truncated": BOOL, "text": STR}
                ),
            },
        }
    ),
    "File": FILE,
    **TRY_SCHEMAS,
}
QUERY_SCHEMAS: dict[str, S] = {
    "search": STR,
    "format": {"enum": ["curl", "javascript", "python"]},
    "limit": {**INT, "minimum": 1, "maximum": 1000},
    "before": {**STR, "description": "an execution's received_at: older ones only"},
    "replace": BOOL,
    "kind": {"enum": ["functions", "step"]},
    "status": {
        "enum": ["", "ok", "error", "timeout", "oom", "crashed", "rejected"],
        "description": "empty: any",
    },
    "function": {**STR, "description": "one function's records ('(step)': a step's runs)"},
    "replica": {**STR, "description": "one replica's logs (its name, as listed)"},
    "tail": {**INT, "minimum": 0, "maximum": 16 << 20, "description": "bytes per replica"},
    "follow": BOOL,
    "workspaces": {**BOOL, "description": "include every script's WORKSPACE_DIR"},
    "include_key": {**BOOL, "description": "include the integration secrets' key"},
    **ACCOUNT_QUERY,
    **ASYNC_QUERY,
    **INPUT_QUERY,
}
FINDING = _obj({"level": STR, "code": STR, "message": STR, "where": STR, "fix": STR})
SCHEMAS: dict[str, S] = {
    "OpenAPI": {"type": "object"},
    "Profiles": _obj({"profiles": {"type": "array", "items": {"type": "object"}}}),
    "Runtimes": _obj({"runtimes": {"type": "array", "items": {"type": "object"}}}),
    "Upload": _obj({"archive_id": STR, "size": INT, "filename": STR}),
    "Report": _obj(
        {
            "ok": BOOL,
            "language": NULL_STR,
            "errors": {"type": "array", "items": FINDING},
            "warnings": {"type": "array", "items": FINDING},
            "functions": {"type": "array", "items": STR},
            "entries": INT,
            "unpacked_bytes": INT,
        }
    ),
    "ScriptList": _obj({"scripts": {"type": "array", "items": _obj(
        {"name": STR, "status": STR, "added_by": STR, "updated_at": STR, "language": STR})}}),
    "Script": SCRIPT,
    "Version": VERSION,
    "History": _obj(
        {
            "versions": {"type": "array", "items": VERSION},
            "events": {"type": "array", "items": _obj(
                {"at": STR, "kind": STR, "actor": STR, "detail": {"type": "object"}})},
        }
    ),
    "Deleted": _obj({"deleted": STR}),
    **CALL_SCHEMAS,
    **ACCOUNT_SCHEMAS,
    **SECRET_SCHEMAS,
    **ASYNC_SCHEMAS,
    **INPUT_SCHEMAS,
    "Error": _obj(
        {"error": _obj({"type": {"enum": ["bad_request", "not_found", "conflict",
                                          "invalid_archive", "payload_too_large", "internal"]},
                        "message": STR, "report": _ref("Report")}, ("type", "message"))}
    ),
}  # fmt: skip
MEDIA = {
    "binary": "application/octet-stream",
    "zip": "application/zip",
    "gzip": "application/gzip",
    "text": "text/plain",
}


def _content(schema: str) -> S:
    if schema in MEDIA:
        return {MEDIA[schema]: {"schema": {"type": "string", "format": "binary"}}}
    return {"application/json": {"schema": _ref(schema)}}


def _operation(route: Route) -> S:
    params = [
        {"name": p, "in": "path", "required": True, "schema": path_schema(route.path, p)}
        for p in re.findall(r"\{(\w+)\}", route.path)
    ]
    query = ("search",) if route.path == "/v1/scripts" and route.method == "GET" else route.query
    params += [
        {"name": q.rsplit(".", 1)[-1], "in": "query", "required": False,
         "schema": QUERY_SCHEMAS[q]}
        for q in query
    ]  # fmt: skip
    if route.request == "binary":  # an upload's name (quoted): an archive's is made safe
        uploads = route.path == "/v1/uploads"
        params.append({"name": "X-Filename", "in": "header", "required": uploads,
                       "schema": FILE_NAME if uploads else STR})  # fmt: skip
    error = {"description": "error", "content": _content("Error")}
    op: S = {
        "summary": route.summary,
        "operationId": route.handler.__name__,
        "parameters": params,
        "responses": {
            str(route.status): {"description": "success", "content": _content(route.response)},
            "4XX": error,
            "5XX": error,
        },
    }
    if route.request:
        op["requestBody"] = {"required": True, "content": _content(route.request)}
    return op


def openapi_document(routes: tuple[Route, ...], config: Config | None = None) -> S:
    """The document of `routes`; with `config`, its ranges (timeouts, profiles) too."""
    paths: dict[str, S] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "scriptd admin API",
            "version": "1",
            "description": "HTTP/JSON over the daemon's unix socket; the caller is the "
            "socket peer's user (SO_PEERCRED).",
        },
        "paths": paths,
        "components": {"schemas": with_config(SCHEMAS, config)},
    }

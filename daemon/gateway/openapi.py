"""The OpenAPI 3.1 description of the gateway, served at `GET /openapi.json`.

Built like the admin API's (daemon/admin/openapi.py): schemas written once, by
name, and a table of routes, one `GatewayRoute` per method and path, naming its
request, its answers (status -> schema) and whether it takes an API key. The
aiohttp app adds its routes from this table (app.py, `make_gateway`), so a route
cannot be served there without appearing here; the lean front's routing
(calls.py) is held against the table by tests/daemon/gateway/test_openapi.py.
A new route is one line in `ROUTES` (plus its handler).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["EXECUTION_HEADER", "ROUTES", "GatewayRoute", "known_paths", "openapi_document"]

S = dict[str, Any]

EXECUTION_HEADER = "X-Scriptd-Execution-Id"


@dataclass(frozen=True)
class GatewayRoute:
    method: str
    path: str
    operation: str  # operationId; make_gateway maps it to its handler
    summary: str
    request: str | None  # a schema name, or "binary"
    answers: Mapping[int, str]  # status -> schema name (or "binary"); see STATUSES
    keyed: bool = True  # needs `Authorization: Bearer <key>`
    query: tuple[str, ...] = ()  # optional query parameters (QUERY gives their type)
    headers: tuple[str, ...] = ()  # optional request headers (HEADERS gives their type)


def _obj(props: S, required: tuple[str, ...] = (), **more: Any) -> S:
    return {"type": "object", "properties": props, "required": list(required), **more}


def _ref(name: str) -> S:
    return {"$ref": f"#/components/schemas/{name}"}


STR, INT, BOOL = {"type": "string"}, {"type": "integer"}, {"type": "boolean"}
NULL_STR = {"type": ["string", "null"]}
SCRIPT_NAME = {**STR, "pattern": "^[a-z][a-z0-9-]{1,62}$"}
TYPED_VALUE: S = {
    "type": "object",
    "minProperties": 1,
    "maxProperties": 1,
    "description": "a typed value: one key, its type code (step.toml's), e.g. "
    '{"s": "Ada"}, {"n": 3.5}, {"d": "2026-12-04"}, {"dt": "2026-12-04T17:00:00Z"}, '
    '{"a[s]": ["x", "y"]}, {"e<object uuid>": "..."}, {"o<object uuid>,<field uuid>": "..."}',
    "properties": {  # each may be null: an output the step did not set
        "s": NULL_STR,
        "n": {"type": ["number", "null"]},
        "b": {"type": ["boolean", "null"]},
        "d": {**NULL_STR, "format": "date"},
        "dt": {**NULL_STR, "format": "date-time"},
        "p": {**NULL_STR, "description": "a phone number"},
        "u": {**NULL_STR, "format": "uuid"},
        "l": {"type": ["array", "null"]},
    },
}
TYPED = {
    "type": "object",
    "additionalProperties": {"anyOf": [_ref("TypedValue"), {"type": "null"}]},
    "description": 'typed values by name, e.g. {"name": {"s": "Ada"}}',
}
LOG = _obj({"ts": STR, "message": STR}, ("ts", "message"))
ASYNC_STATUSES = ["queued", "running", "succeeded", "failed", "timed_out", "expired",
                  "canceled"]  # fmt: skip
SCHEMAS: dict[str, S] = {
    "Health": _obj({"ok": BOOL}, ("ok",)),
    "OpenAPI": {"type": "object"},
    "Payload": {"type": "object", "description": "the function's keyword arguments (Python) "
                "or its one argument (JavaScript)"},
    "CallResult": _obj({"result": {"description": "what the function returned, as JSON"}},
                       ("result",)),
    "TypedValue": TYPED_VALUE,
    "StepRun": _obj({"inputs": {"anyOf": [_ref("Typed"), {"type": "null"}]}},
                    additionalProperties=False),
    "Typed": TYPED,
    "StepResult": _obj(
        {
            "outputs": _ref("Typed"),
            "execution_id": STR,
            "error": {**_ref("ErrorDetail"), "description": "422: the step raised; the "
                      "outputs are the partial ones"},
            "logs": {"type": "array", "items": LOG, "description": "?details=1"},
            "logs_discarded": {**INT, "description": "?details=1"},
            "stdout": {**STR, "description": "?details=1"},
            "stderr": {**STR, "description": "?details=1"},
        },
        ("outputs", "execution_id"),
    ),
    "File": _obj({"name": STR, "size": INT, "modified_at": STR}, ("name", "size", "modified_at")),
    "ErrorDetail": _obj(
        {
            "type": {**STR, "description": "bad_request, unauthorized, forbidden, not_found, "
                     "method_not_allowed, conflict, payload_too_large, throttled, queue_full, "
                     "out_of_memory, worker_crashed, not_deployed, unavailable, timeout, or "
                     "(422) the type of the exception the script raised"},
            "message": STR,
            "traceback": {**STR, "description": "422: where the script raised"},
        },
        ("type", "message"),
    ),
    "Error": _obj({"error": _ref("ErrorDetail")}, ("error",)),
    "Accepted": _obj({"execution_id": STR, "status": {"enum": ASYNC_STATUSES}},
                     ("execution_id", "status")),
    "AsyncCall": _obj(
        {
            "execution_id": STR, "script": STR, "function": STR,
            "status": {"enum": ASYNC_STATUSES},
            "dead": {**BOOL, "description": "failed every attempt, or expired"},
            "attempts": INT, "max_retries": INT,
            "attempt_log": {"type": "array", "items": _obj(
                {"execution_id": NULL_STR, "status": STR, "started_at": STR, "ended_at": STR,
                 "error_type": NULL_STR})},
            "received_at": STR, "started_at": NULL_STR, "ended_at": NULL_STR,
            "duration_ms": {"type": ["integer", "null"]}, "key_name": NULL_STR,
            "idempotency_key": NULL_STR,
            "result": {"description": "a function's return value; a step's whole answer"},
            "error": {"type": "object"},
            "callback": _obj({"url": STR, "state": NULL_STR,
                              "deliveries": {"type": "array", "items": _obj(
                                  {"at": STR, "attempt": INT,
                                   "status_code": {"type": ["integer", "null"]},
                                   "error": NULL_STR, "duration_ms": {"type": "number"}},
                                  ("at", "attempt", "status_code", "error", "duration_ms"))}},
                             ("url", "state", "deliveries")),
        },
        ("execution_id", "status", "attempts"),
    ),
}  # fmt: skip

# What each status means on the gateway, whichever route answers it.
STATUSES: dict[int, str] = {
    200: "success",
    201: "stored",
    202: "accepted (Prefer: respond-async): queued, see Location",
    400: "bad body: not JSON, not an object, or fields the route does not take",
    401: "no API key, or not a valid one",
    403: "a key of another script (uploads: a key of a script that is not Deployed)",
    404: "unknown script, function or route; a step's /run on a script that is not a step",
    409: "a folder is in the way of the file's name; an async call that is not queued",
    413: "the body is larger than the limit (gateway.max_body_bytes, uploads.max_file_bytes)",
    422: "the function (step) raised, or a typed value had the wrong type",
    429: "too many failed keys from this address, or the script's queue is full",
    502: "the worker ran out of memory (out_of_memory) or died (worker_crashed)",
    503: "the script is not Deployed or its replicas are not running",
    504: "the call ran past the script's timeout",
}
CALL_ERRORS = (400, 401, 403, 404, 413, 422, 429, 502, 503, 504)
QUERY: dict[str, S] = {
    "details": {**STR, "description": "1, true or yes: the answer adds logs, stdout and "
                "stderr (any other value: it does not)"},
}  # fmt: skip
HEADERS: dict[str, S] = {
    "Prefer": {**STR, "description": "respond-async: answer 202 at once and run the call "
               "from the queue (GET /v1/executions/{id})"},
    "Idempotency-Key": {**STR, "description": "with respond-async: the same key again "
                        "within 24 h answers the first call"},
    "X-Callback-Url": {**STR, "description": "with respond-async: the ended call is POSTed "
                       "there, signed (X-Scriptd-Signature)"},
}  # fmt: skip
# Response headers: which statuses carry them.
EXECUTION_ID = {"description": "the execution's id (scriptctl executions)", "schema": STR}
RESPONSE_HEADERS: dict[int, dict[str, S]] = {
    202: {"Location": {"description": "/v1/executions/{id}", "schema": STR, "required": True}},
    401: {"WWW-Authenticate": {"schema": {"const": "Bearer"}, "required": True}},
    429: {"Retry-After": {"description": "seconds", "schema": {**STR, "pattern": "^[0-9]+$"}}},
}


ASYNC = ("Prefer", "Idempotency-Key", "X-Callback-Url")


def _answers(ok: Mapping[int, str], errors: tuple[int, ...]) -> dict[int, str]:
    return {**ok, **{status: "Error" for status in errors}}


ROUTES: tuple[GatewayRoute, ...] = (
    GatewayRoute("GET", "/healthz", "healthz", "The gateway answers", None, {200: "Health"},
                 keyed=False),
    GatewayRoute("GET", "/openapi.json", "openapi", "This document", None, {200: "OpenAPI"},
                 keyed=False),
    GatewayRoute("POST", "/v1/scripts/{script}/functions/{function}", "call",
                 "Call a function of a Deployed script", "Payload",
                 _answers({200: "CallResult", 202: "Accepted"}, CALL_ERRORS), headers=ASYNC),
    GatewayRoute("POST", "/v1/scripts/{script}/run", "run", "Run a code step with typed inputs",
                 "StepRun", _answers({200: "StepResult", 202: "Accepted"}, CALL_ERRORS)
                 | {422: "StepResult"}, query=("details",), headers=ASYNC),
    GatewayRoute("GET", "/v1/scripts/{script}/openapi.json", "script_openapi",
                 "This script's own document: its functions with their parameters (from "
                 "main.py's annotations and defaults), or its step's typed inputs and outputs",
                 None, _answers({200: "OpenAPI"}, (401, 403, 404, 429, 503))),
    GatewayRoute("PUT", "/v1/uploads/{filename}", "upload",
                 "Add or replace a file of the account's uploads (UPLOADS_DIR)", "binary",
                 _answers({201: "File"}, (400, 401, 403, 409, 413, 429))),
    GatewayRoute("GET", "/v1/executions/{id}", "execution",
                 "An asynchronous call of the key's script: status, attempts, times, result or "
                 "error, callback deliveries", None, _answers({200: "AsyncCall"}, (401, 404, 429))),
    GatewayRoute("DELETE", "/v1/executions/{id}", "cancel_execution",
                 "Cancel a queued asynchronous call (409 once it runs or ended)", None,
                 _answers({200: "AsyncCall"}, (401, 404, 409, 429))),
)  # fmt: skip

PATH_PARAMETERS: dict[str, S] = {
    "script": SCRIPT_NAME,
    "function": {**STR, "description": "a function defined in the main file"},
    "filename": {**STR, "pattern": "^(?!.*[.][.])[A-Za-z0-9][A-Za-z0-9._-]{0,254}$"},
    "id": {**STR, "description": "the execution_id of an asynchronous call"},
}
MEDIA = {"binary": "application/octet-stream"}


def _content(schema: str) -> S:
    if schema in MEDIA:
        return {MEDIA[schema]: {"schema": {"type": "string", "format": "binary"}}}
    return {"application/json": {"schema": _ref(schema)}}


def _response(route: GatewayRoute, status: int, schema: str) -> S:
    out: S = {"description": STATUSES[status], "content": _content(schema)}
    headers = dict(RESPONSE_HEADERS.get(status, {}))
    if route.keyed and route.operation in ("call", "run") and status not in (401, 403, 503):
        # Every call past the key check is recorded; a 404 of an unknown script is not.
        headers[EXECUTION_HEADER] = {**EXECUTION_ID, "required": status == 200}
    if headers:
        out["headers"] = headers
    return out


def _parameters(route: GatewayRoute) -> list[S]:
    params = [
        {"name": p, "in": "path", "required": True, "schema": PATH_PARAMETERS[p]}
        for p in re.findall(r"\{(\w+)\}", route.path)
    ]
    params += [{"name": q, "in": "query", "required": False, "schema": QUERY[q]}
               for q in route.query]  # fmt: skip
    params += [{"name": h, "in": "header", "required": False, "schema": HEADERS[h]}
               for h in route.headers]  # fmt: skip
    return params


def _operation(route: GatewayRoute) -> S:
    op: S = {
        "summary": route.summary,
        "operationId": route.operation,
        "parameters": _parameters(route),
        "responses": {
            str(status): _response(route, status, schema)
            for status, schema in sorted(route.answers.items())
        },
    }
    if route.request:
        op["requestBody"] = {"required": True, "content": _content(route.request)}
    op["security"] = [{"ApiKey": []}] if route.keyed else []
    return op


def openapi_document(routes: tuple[GatewayRoute, ...] = ROUTES) -> S:
    paths: dict[str, S] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "scriptd gateway",
            "version": "1",
            "description": "Call the functions and code steps of Deployed scripts. Every "
            'error is JSON {"error": {"type", "message", ...}}; a method a path does not '
            "take gets 405 with Allow, an unknown path 404; a GET route answers HEAD too.",
        },
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "ApiKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "an API key of the script (scriptctl keys create NAME); "
                    "uploads take a key of any Deployed script",
                }
            },
        },
    }


def known_paths(routes: tuple[GatewayRoute, ...]) -> tuple[tuple[str, str, str], ...]:
    """(methods, start, middle) per path, in table order: a request whose path starts
    with `start` and holds `middle` is on that path (the 405 of a method it does not take)."""
    methods: dict[str, list[str]] = {}
    for route in routes:
        methods.setdefault(route.path, []).append(route.method)
    known = []
    for path, taken in methods.items():
        pieces = re.split(r"\{\w+\}", path)
        known.append((", ".join(taken), pieces[0], pieces[1] if len(pieces) > 1 else ""))
    return tuple(known)

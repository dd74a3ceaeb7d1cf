"""The OpenAPI schemas of the account, usage, notifications and events routes
(daemon/admin/account_routes.py), merged into `GET /openapi.json` by daemon/admin/openapi.py.

Plain dicts (no import of admin_openapi, which imports this module).
"""

from __future__ import annotations

from typing import Any

S = dict[str, Any]


def _obj(props: S, required: tuple[str, ...] = ()) -> S:
    return {"type": "object", "properties": props, "required": list(required)}


STR, INT, NUM, BOOL = (
    {"type": "string"},
    {"type": "integer"},
    {"type": "number"},
    {"type": "boolean"},
)
NULL_STR = {"type": ["string", "null"]}
NULL_INT = {"type": ["integer", "null"]}
STORE = _obj(
    {
        "total_bytes": {**INT, "description": "the database and its write-ahead log"},
        "database_bytes": INT, "wal_bytes": INT,
        "free_bytes": {**INT, "description": "freed pages, reused before it grows"},
        "execution_records": INT, "outbox_messages": INT,
        "retention_days": NUM, "max_per_script": INT,
    }
)  # fmt: skip
ACCOUNT = _obj(
    {
        "allocation": {**NUM, "description": "credits granted in total"},
        "balance": {**NUM, "description": "credits remaining (never shown below 0)"},
        "spent": NUM,
        "allocation_micro": INT,
        "balance_micro": {**INT, "description": "may dip a meter tick below 0"},
        "low_balance": {**NUM, "description": "the low-credits email fires below this"},
        "admission_hours": NUM,
        "store": STORE,
    }
)
DECISION = _obj(
    {
        "from": INT, "to": INT, "reason": STR, "utilization_pct": {"type": ["number", "null"]},
        "target_pct": NUM, "queue_wait_s": NUM, "queued": INT, "in_flight": INT,
        "recommendation": INT,
    }
)  # fmt: skip
EVENT = _obj({"at": STR, "kind": STR, "actor": STR, "detail": {"type": "object"}})
AUTOSCALING = _obj(
    {
        "enabled": BOOL, "min_replicas": INT, "max_replicas": INT, "cpu_target_pct": INT,
        "replicas": NULL_INT, "ready": NULL_INT,
        "last_decision": {"oneOf": [DECISION, {"type": "null"}]},
        "recent": {"type": "array", "items": EVENT},
    }
)  # fmt: skip
NOTIFICATION = _obj(
    {
        "id": INT, "kind": STR, "subject": STR, "recipient": STR,
        "status": {"enum": ["queued", "sent", "retrying", "failed"]}, "attempts": INT,
        "last_error": NULL_STR, "created_at": STR, "next_attempt_at": NULL_STR,
        "sent_at": NULL_STR, "script": NULL_STR, "version": NULL_INT,
    }
)  # fmt: skip
USAGE_ROW = _obj(
    {"script": STR, "profile": STR, "replica_seconds": NUM, "credits": NUM, "replicas": INT}
)
ACCOUNT_SCHEMAS: dict[str, S] = {
    "Account": ACCOUNT,
    "Usage": _obj(
        {"since": STR, "until": STR, "total_credits": NUM, "total_replica_seconds": NUM,
         "scripts": {"type": "array", "items": USAGE_ROW}}
    ),
    "Notifications": _obj(
        {"smtp_configured": BOOL, "notifications": {"type": "array", "items": NOTIFICATION}}
    ),
    "Events": _obj(
        {"script": STR, "events": {"type": "array", "items": EVENT}, "autoscaling": AUTOSCALING}
    ),
}  # fmt: skip
SECRET = _obj(
    {"name": STR, "created_by": STR, "created_at": STR, "updated_at": STR,
     "used_by": {"type": "array", "items": STR, "description": "the scripts granted it"}}
)  # fmt: skip
SECRET_SCHEMAS: dict[str, S] = {
    "Secret": SECRET,
    "SecretList": _obj({"secrets": {"type": "array", "items": SECRET}}),
}
SECRET_SCHEMAS["ConsoleLink"] = _obj(
    {"url": {**STR, "description": "single use, opens a console session as the caller"},
     "user": STR, "expires_in_s": INT}
)  # fmt: skip
# Keyed "route.parameter" where another route has a parameter of that name (openapi.py).
ACCOUNT_QUERY: dict[str, S] = {
    "events.kind": {**STR, "description": "one event kind, e.g. scaled"},
    "notifications.status": {
        "enum": ["", "queued", "sent", "retrying", "failed"],
        "description": "empty: any",
    },
    "script": STR,
}

ASYNC_STATUSES = ["queued", "running", "succeeded", "failed", "timed_out", "expired",
                  "canceled"]  # fmt: skip
ATTEMPT = _obj(
    {"execution_id": {**NULL_STR, "description": "the attempt's execution record"},
     "status": STR, "started_at": STR, "ended_at": STR, "error_type": NULL_STR},
    ("status", "started_at", "ended_at"),
)  # fmt: skip
DELIVERY = _obj(
    {"at": STR, "attempt": INT,
     "status_code": {**NULL_INT, "description": "null: no answer (egress refused, no connection)"},
     "error": NULL_STR, "duration_ms": NUM},
    ("at", "attempt", "status_code", "error", "duration_ms"),
)  # fmt: skip
ASYNC_CALL = _obj(
    {
        "async": {"const": True, "description": "an asynchronous call (Prefer: respond-async)"},
        "execution_id": STR, "script": STR, "function": STR,
        "status": {"enum": ASYNC_STATUSES},
        "dead": {**BOOL, "description": "failed every attempt, or expired"},
        "attempts": INT, "max_retries": INT,
        "attempt_log": {"type": "array", "items": ATTEMPT},
        "received_at": STR, "started_at": NULL_STR, "ended_at": NULL_STR,
        "duration_ms": NULL_INT, "key_name": NULL_STR, "idempotency_key": NULL_STR,
        "result": {"description": "a function's return value; a step's whole answer"},
        "error": {"type": "object"},
        "callback": _obj(
            {"url": STR, "state": {**NULL_STR, "description": "pending, delivered or failed"},
             "deliveries": {"type": "array", "items": DELIVERY}},
            ("url", "state", "deliveries"),
        ),
    },
    ("async", "execution_id", "script", "function", "status", "dead", "attempts",
     "max_retries", "attempt_log", "received_at", "started_at", "ended_at"),
)  # fmt: skip
ASYNC_SUMMARY = _obj(
    {"execution_id": STR, "function": STR, "status": {"enum": ASYNC_STATUSES}, "dead": BOOL,
     "attempts": INT, "received_at": STR, "ended_at": NULL_STR, "key_name": NULL_STR,
     "error_type": NULL_STR},
    ("execution_id", "function", "status", "dead", "attempts"),
)  # fmt: skip
ASYNC_SCHEMAS: dict[str, S] = {
    "AsyncCall": ASYNC_CALL,
    "AsyncCallList": _obj({"script": STR, "calls": {"type": "array", "items": ASYNC_SUMMARY}}),
    "CallbackSecret": _obj({"script": STR, "secret": STR, "rotated": BOOL}, ("script", "secret")),
}
ASYNC_QUERY: dict[str, S] = {  # the statuses of ASYNC_STATUSES, dead, or empty
    "filter": {
        "description": "empty: every call",
        "enum": [
            "",
            "queued",
            "running",
            "succeeded",
            "failed",
            "timed_out",
            "expired",
            "canceled",
            "dead",
        ],
    },
}

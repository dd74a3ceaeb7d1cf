"""Asynchronous calls (`Prefer: respond-async`) as the store keeps them.

An accepted call is a row of the store's queue (daemon/store/async_calls_table.py) from
its 202 on: the worker loop (daemon/account/async_loop.py) runs it through the same
serving path as a synchronous call, possibly several times (the script's retries), and
each attempt leaves an execution record of its own. Times are unix milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

__all__ = [
    "ASYNC_STATUSES",
    "DONE",
    "AsyncCall",
    "Delivery",
    "NewAsyncCall",
    "iso_ms",
]

QUEUED, RUNNING = "queued", "running"
SUCCEEDED, FAILED, TIMED_OUT, EXPIRED, CANCELED = (
    "succeeded", "failed", "timed_out", "expired", "canceled",
)  # fmt: skip
ASYNC_STATUSES = (QUEUED, RUNNING, SUCCEEDED, FAILED, TIMED_OUT, EXPIRED, CANCELED)
DONE = frozenset((SUCCEEDED, FAILED, TIMED_OUT, EXPIRED, CANCELED))
DEAD = "dead"  # not a status: a call that failed every attempt, or expired (a filter)

# Callback states: a call with a callback URL gets one when it ends.
CB_PENDING, CB_DELIVERED, CB_FAILED = "pending", "delivered", "failed"


def iso_ms(ms: int | None) -> str | None:
    if ms is None:
        return None
    text = datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
    return text[:-3] + "Z"


@dataclass(frozen=True, slots=True)
class NewAsyncCall:
    """A call the gateway accepted, before it is queued."""

    id: str
    script_id: int
    function: str  # "(step)" for a code step's run
    key_name: str | None
    body: bytes
    details: bool
    idempotency_key: str | None
    callback_url: str | None
    max_retries: int
    max_age_ms: int
    received_ms: int


@dataclass(frozen=True, slots=True)
class Delivery:
    """One POST of a call's result to its callback URL."""

    at: str
    attempt: int
    status_code: int | None  # None: no answer (refused by egress, connection failed)
    error: str | None
    duration_ms: float

    def to_json(self) -> dict[str, Any]:
        return {"at": self.at, "attempt": self.attempt, "status_code": self.status_code,
                "error": self.error, "duration_ms": round(self.duration_ms, 3)}  # fmt: skip


@dataclass(frozen=True, slots=True)
class AsyncCall:
    id: str
    script_id: int
    script: str
    function: str
    key_name: str | None
    body: bytes
    details: bool
    status: str
    dead: bool
    idempotency_key: str | None
    callback_url: str | None
    max_retries: int
    max_age_ms: int
    attempts: int
    received_ms: int
    next_ms: int
    started_ms: int | None
    ended_ms: int | None
    result_json: str | None
    error_json: str | None
    attempt_log: tuple[dict[str, Any], ...]  # per attempt: execution id, status, times
    callback_state: str | None
    callback_next_ms: int | None
    callback_tries: int
    deliveries: tuple[Delivery, ...] = field(default=())

    @property
    def duration_ms(self) -> int | None:
        if self.started_ms is None or self.ended_ms is None:
            return None
        return self.ended_ms - self.started_ms

    def to_json(self) -> dict[str, Any]:
        """What `GET /v1/executions/{id}` shows (the body is not shown)."""
        doc: dict[str, Any] = {
            "execution_id": self.id,
            "script": self.script,
            "function": self.function,
            "status": self.status,
            "dead": self.dead,
            "attempts": self.attempts,
            "max_retries": self.max_retries,
            "attempt_log": list(self.attempt_log),
            "received_at": iso_ms(self.received_ms),
            "started_at": iso_ms(self.started_ms),
            "ended_at": iso_ms(self.ended_ms),
            "duration_ms": self.duration_ms,
            "key_name": self.key_name,
            "idempotency_key": self.idempotency_key,
        }
        if self.result_json is not None:
            doc["result"] = orjson.Fragment(self.result_json)
        if self.error_json is not None:
            doc["error"] = orjson.Fragment(self.error_json)
        if self.callback_url is not None:
            doc["callback"] = {
                "url": self.callback_url,
                "state": self.callback_state,
                "deliveries": [d.to_json() for d in self.deliveries],
            }
        return doc

    def summary(self) -> dict[str, Any]:
        """A line of a listing: no result, no error details, no deliveries."""
        error = orjson.loads(self.error_json) if self.error_json else None
        return {
            "execution_id": self.id,
            "function": self.function,
            "status": self.status,
            "dead": self.dead,
            "attempts": self.attempts,
            "received_at": iso_ms(self.received_ms),
            "ended_at": iso_ms(self.ended_ms),
            "key_name": self.key_name,
            "error_type": error.get("type") if isinstance(error, dict) else None,
        }

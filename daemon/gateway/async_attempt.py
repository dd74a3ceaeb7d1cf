"""One attempt of an asynchronous call, through the same serving path as a synchronous
call: the script's dispatcher (its queue and workers), an execution record of its own
(`Gateway.new_record`, `record_answer`, `record_failure`), the code step's run
(daemon/gateway/step_calls.py) for a step.

The worker loop (daemon/account/async_loop.py) decides what the outcome means for the
call: done, tried again after a backoff, or a dead letter. A script whose queue is full
or that does not serve is `busy`: nothing ran, nothing is recorded, the call waits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from daemon.core.async_calls import AsyncCall
from daemon.gateway.app import Gateway
from daemon.gateway.recorder import Call
from daemon.gateway.step_calls import STEP_FUNCTION, StepAnswer, StepRefusal, run_step
from daemon.serving.call_errors import CallError, QueueFull, Unavailable
from daemon.serving.replica_runner import ServingVersion

__all__ = ["BUSY", "Attempt", "run_attempt"]

BUSY = "busy"  # not an execution status: the attempt did not start


@dataclass(frozen=True, slots=True)
class Attempt:
    """How one attempt ended: the execution record's status (ok, error, timeout, oom,
    crashed, rejected) or BUSY; the answer's JSON for a success or a step's 422."""

    status: str
    execution_id: str | None
    result_json: str | None = None
    error: dict[str, Any] | None = None
    busy_reason: str = ""

    def log_entry(self, started: str, ended: str) -> dict[str, Any]:
        entry: dict[str, Any] = {"execution_id": self.execution_id, "status": self.status,
                                 "started_at": started, "ended_at": ended}  # fmt: skip
        if self.error is not None:
            entry["error_type"] = self.error.get("type")
        return entry


async def run_attempt(gateway: Gateway, serving: ServingVersion, call: AsyncCall) -> Attempt:
    record = gateway.new_record(serving.target, call.function, call.key_name)
    if call.function == STEP_FUNCTION:
        return await _run_step(gateway, serving, call, record)
    gateway.keep_inputs(record, call.body)
    record.input_bytes = len(call.body)
    try:
        result = await serving.dispatcher.call(
            call.function, payload_json=call.body, call_id=record.id
        )
    except (QueueFull, Unavailable) as exc:
        return Attempt(BUSY, None, busy_reason=exc.message)
    except CallError as exc:
        return _failed(gateway, record, exc)
    gateway.record_answer(record, result)
    return Attempt("ok", record.id, orjson.dumps(result.value).decode())


async def _run_step(
    gateway: Gateway, serving: ServingVersion, call: AsyncCall, record: Call
) -> Attempt:
    record.input_bytes = len(call.body)
    outcome = await run_step(gateway, serving, record, call.body, call.details)
    if isinstance(outcome, QueueFull | Unavailable):
        return Attempt(BUSY, None, busy_reason=outcome.message)
    if isinstance(outcome, CallError):
        return _failed(gateway, record, outcome)
    if isinstance(outcome, StepRefusal):  # checked at intake: only a changed step.toml
        error = {"type": outcome.kind, "message": outcome.message}
        gateway.record_refusal(record, outcome.kind, outcome.message)
        return Attempt("rejected", record.id, error=error)
    return _step_answer(record, outcome)


def _step_answer(record: Call, answer: StepAnswer) -> Attempt:
    """The step's answer as it is (outputs, execution id, and its error after a raise)."""
    text = answer.body.decode()
    if answer.status == 200:
        return Attempt("ok", record.id, text)
    error = orjson.loads(answer.body).get("error")
    return Attempt(record.status, record.id, text, error if isinstance(error, dict) else None)


def _failed(gateway: Gateway, record: Call, exc: CallError) -> Attempt:
    doc = gateway.record_failure(record, exc)
    return Attempt(exc.status, record.id, error=dict(doc["error"]))

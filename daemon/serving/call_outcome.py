"""What a settled call gives its caller: the worker's outcome (its result frame, a
WorkerLoss, StoppedFor, or TIMED_OUT from the dispatcher's deadline) mapped to a
`CallResult` or the `CallError` to answer with, stamped with where and how long it ran.
"""

from __future__ import annotations

from typing import Any

from daemon.serving.call_errors import (
    CallError,
    deadline_timeout,
    loss_error,
    result_error,
    stopped_error,
)
from daemon.serving.call_result import CallResult
from daemon.serving.pending_call import PendingCall, StoppedFor
from daemon.serving.worker import Worker

__all__ = ["TIMED_OUT", "outcome_of"]

# A call past its deadline (the dispatcher settles it with this).
TIMED_OUT = object()


def outcome_of(
    outcome: Any,
    call: PendingCall,
    worker: Worker,
    queue_ms: float,
    run_ms: float,
    timeout_s: float,
    grace_s: float,
) -> CallResult | CallError:
    """The caller's answer to `call`, which `worker` ran, settled with `outcome`.
    `timeout_s` and `grace_s` (the script's, for the messages) are the dispatcher's."""
    if type(outcome) is dict:
        if outcome.get("ok"):
            return CallResult(
                call.id,
                outcome.get("value"),
                outcome.get("stdout", ""),
                outcome.get("stderr", ""),
                bool(outcome.get("truncated", False)),
                float(outcome.get("cpu_ms", 0.0)),
                float(outcome.get("wall_ms", 0.0)),
                queue_ms,
                run_ms,
                worker.pid,
                worker.owner.name,
                outcome,
                worker.lane,
                call.shared,
            )
        exc: CallError = result_error(outcome, worker.capacity)
    elif outcome is TIMED_OUT:
        exc = deadline_timeout(timeout_s, worker.capacity, grace_s)
    elif isinstance(outcome, StoppedFor):
        exc = stopped_error(outcome.call_id, worker.capacity, timeout_s, grace_s)
    else:
        exc = loss_error(outcome)
    exc.queue_ms, exc.run_ms = queue_ms, run_ms
    exc.replica = worker.owner.name
    exc.egress_lane = worker.lane
    exc.shared = call.shared
    return exc

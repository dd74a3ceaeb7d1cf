"""How a call ends when it does not return: the errors the dispatcher raises, each with its
HTTP status and JSON body.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from daemon.serving.pending_call import WorkerLoss


class CallError(Exception):
    """A call that did not return a value. `status` is the execution record's status."""

    status = "error"
    http_status = 500
    error_type = "internal"

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra
        self.queue_ms = 0.0
        self.run_ms = 0.0
        self.replica: str | None = None  # the replica whose worker had the call
        self.egress_lane: int | None = None  # that worker's socket to the egress proxy
        self.shared = False  # other calls ran on the same worker meanwhile

    def to_json(self) -> dict[str, Any]:
        return {"error": {"type": self.error_type, "message": self.message, **self.extra}}


class FunctionError(CallError):
    """The function raised: type, message and traceback of the script's exception."""

    http_status = 422

    def __init__(self, frame: dict[str, Any]) -> None:
        err = frame.get("error") or {}
        super().__init__(
            str(err.get("message", "")),
            traceback=err.get("traceback", ""),
            stdout=frame.get("stdout", ""),
            stderr=frame.get("stderr", ""),
            truncated=bool(frame.get("truncated", False)),
        )
        if "code" in err:  # javascript errors may carry one (MODULE_NOT_FOUND, ...)
            self.extra["code"] = err["code"]
        self.error_type = str(err.get("type", "Error"))
        self.frame = frame


class Timeout(CallError):
    status = "timeout"
    http_status = 504
    error_type = "timeout"


class OutOfMemory(CallError):
    status = "oom"
    http_status = 502
    error_type = "out_of_memory"


class WorkerCrashed(CallError):
    status = "crashed"
    http_status = 502
    error_type = "worker_crashed"


class QueueFull(CallError):
    status = "rejected"
    http_status = 429
    error_type = "queue_full"


class Unavailable(CallError):
    status = "rejected"
    http_status = 503
    error_type = "unavailable"


class UnknownFunction(CallError):
    status = "rejected"
    http_status = 404
    error_type = "not_found"


MiB = 1024 * 1024


def _mib(n: int | None) -> str:
    if n is None:
        return "the memory limit"
    return f"the {n / MiB:.0f} MiB memory limit"


def loss_error(loss: WorkerLoss) -> CallError:
    """The error of a call whose worker died under it."""
    if loss.heap_limit_bytes is not None:
        return OutOfMemory(
            f"out of memory: the call went past the {loss.heap_limit_bytes / MiB:.0f} MiB "
            "JavaScript heap limit (node's heap, sized from "
            f"{_mib(loss.memory_bytes)} of the script's hardware profile) and its worker "
            "was killed",
            memory_limit_bytes=loss.memory_bytes,
            heap_limit_bytes=loss.heap_limit_bytes,
        )
    if loss.oom:
        return OutOfMemory(
            f"out of memory: the call went past {_mib(loss.memory_bytes)} of the script's "
            "hardware profile and its worker was killed",
            memory_limit_bytes=loss.memory_bytes,
        )
    named = loss.signal is not None or loss.code is not None
    extra = f"; {loss.detail}" if loss.detail and named else ""
    return WorkerCrashed(
        f"the worker running the call crashed: {loss.describe()}{extra}",
        exit_code=loss.code,
        signal=loss.signal,
    )


def result_error(frame: dict[str, Any], capacity: int) -> CallError:
    """A result frame that is not ok: the function's own error, or, marked "crashed", an
    exception no call caught (a Node worker at concurrency > 1, which then exits): it may
    have come from any call of the worker, so each of them fails as its crash."""
    if not frame.get("crashed"):
        return FunctionError(frame)
    err = frame.get("error") or {}
    kind, message = str(err.get("type", "Error")), str(err.get("message", ""))
    return WorkerCrashed(
        f"the worker running the call crashed: an exception no call caught ({kind}: "
        f"{message}) ended it, and every call it was running (concurrency {capacity})",
        cause={"type": kind, "message": message, "traceback": err.get("traceback", "")},
        stdout=frame.get("stdout", ""),
        stderr=frame.get("stderr", ""),
    )


def queue_timeout(timeout_s: float, arrived: float) -> Timeout:
    """A call that waited for a free worker until its deadline (`arrived`: perf_counter)."""
    exc = Timeout(
        f"the call waited for a free worker past the script's execution timeout of {timeout_s:g} s"
    )
    exc.queue_ms = (time.perf_counter() - arrived) * 1000
    return exc


def deadline_timeout(timeout_s: float, capacity: int, grace_s: float) -> Timeout:
    """A call that ran past its deadline: its worker is stopped (concurrency 1), or the
    call is cancelled in it first."""
    ended = "its worker was stopped"
    if capacity > 1:
        ended = (f"it was cancelled in its worker (which is stopped if the call does "
                 f"not end within {grace_s:g} s)")  # fmt: skip
    return Timeout(
        f"the call did not finish within the script's execution timeout of {timeout_s:g} s; {ended}"
    )


def stopped_error(call_id: str, capacity: int, timeout_s: float, grace_s: float) -> WorkerCrashed:
    """A call whose worker was stopped because `call_id`, beside it, would not end."""
    return WorkerCrashed(
        f"the worker running the call was stopped: call {call_id}, running on "
        f"the same worker (concurrency {capacity}), passed the script's execution "
        f"timeout of {timeout_s:g} s and did not end within {grace_s:g} s of being "
        f"cancelled",
        stopped_for=call_id,
    )

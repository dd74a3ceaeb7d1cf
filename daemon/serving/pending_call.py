"""One call on a worker as the daemon tracks it (`PendingCall`: its outcome, once
settled, and its cancel timer), and the outcomes a worker other than its result frame
can give it: `WorkerLoss` (the worker died under it), `StoppedFor` (the worker was
killed because a call beside it would not end) and `NOT_STARTED` (the worker was lost
before it read the call: the dispatcher sends it to another worker)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from dataclasses import dataclass
from typing import Any

__all__ = ["NOT_STARTED", "PendingCall", "StoppedFor", "WorkerLoss"]

# A lost worker's call that it never read (it did not acknowledge it as started): the
# dispatcher sends it to another worker.
NOT_STARTED = object()


@dataclass(frozen=True)
class WorkerLoss:
    """How a worker died under a call."""

    code: int | None  # exit status, if it exited
    signal: int | None  # signal number, if one killed it
    oom: bool  # the replica's OOM kill counter went up (or the replica died of OOM)
    memory_bytes: int | None  # the replica's memory limit
    detail: str  # extra words: "the replica exited: ..." or ""
    heap_limit_bytes: int | None = None  # set when a node worker exhausted its V8 heap

    def describe(self) -> str:
        if self.signal is not None:
            with contextlib.suppress(ValueError):
                return f"killed by signal {self.signal} ({signal.Signals(self.signal).name})"
            return f"killed by signal {self.signal}"
        if self.code is not None:
            return f"exited with code {self.code}"
        return self.detail or "its connection closed"


@dataclass(frozen=True)
class StoppedFor:
    """A call's worker was killed because call `call_id`, running beside it, passed its
    deadline and did not end when cancelled."""

    call_id: str


_UNSETTLED = object()


class PendingCall:
    """One call on a worker: its outcome, once settled, and its cancel timer.

    The outcome is the worker's result frame, a WorkerLoss, StoppedFor, NOT_STARTED,
    or whatever the dispatcher's deadline handler puts there; `answered` runs once
    after it is settled (the dispatcher's subclass maps it to the caller's answer)."""

    __slots__ = ("cancelled", "id", "outcome", "sent", "shared", "started", "timer")

    def __init__(self, call_id: str) -> None:
        self.id = call_id
        self.outcome: Any = _UNSETTLED
        self.timer: asyncio.TimerHandle | None = None
        self.sent = 0.0  # perf_counter when the call was written to its worker
        self.cancelled = False  # past its deadline: the worker was asked to end it
        self.shared = False  # another call ran on the same worker at the same time
        self.started = True  # read by its worker (capacity > 1: once it says so)

    @property
    def settled(self) -> bool:
        return self.outcome is not _UNSETTLED

    def settle(self, outcome: Any) -> bool:
        """Set the outcome, unless it is set already; True if this call set it (its
        caller then runs `answered`, or has the loop run it: `settle_soon`)."""
        if self.outcome is not _UNSETTLED:
            return False
        self.outcome = outcome
        return True

    def settle_soon(self, outcome: Any) -> None:
        """Settle, and run `answered` from the next callback of the loop."""
        if self.settle(outcome):
            asyncio.get_running_loop().call_soon(self.answered)

    def unsettle(self) -> None:
        """Back to a call not sent yet (to send it again)."""
        self.outcome = _UNSETTLED
        self.cancelled = self.shared = False
        self.timer = None

    def answered(self) -> None:
        """The outcome is settled: what the caller gets (the dispatcher's)."""

"""One worker of a replica as the daemon sees it: its socket, the call it serves, and
how it died (`WorkerLoss`) when it dies under a call.

A `Worker` carries at most one `PendingCall` (a worker serves one call at a time) and
resolves its future with the worker's result frame or with a WorkerLoss; the call's
state machine (deadline, errors) is the dispatcher's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from dataclasses import dataclass
from typing import Any, Protocol

from daemon.serving import wire
from daemon.serving.process import MemoryProbe

log = logging.getLogger(__name__)

__all__ = ["LOSS_GRACE_S", "PendingCall", "Worker", "WorkerLoss", "WorkerOwner"]

LOSS_GRACE_S = 0.5  # how long a lost worker's call waits for "worker_exit" to name the cause


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


class WorkerOwner(Protocol):
    """What a worker reports to (its replica). The worker never changes its owner's
    state: it says what happened, and the owner decides what that means."""

    name: str

    @property
    def accepting(self) -> bool:
        """The owner takes new calls (a draining replica does not)."""
        ...

    def call_started(self, worker: Worker) -> None: ...

    def call_ended(self, worker: Worker) -> None: ...

    def worker_free(self, worker: Worker) -> None:
        """The worker is alive and done with its call."""
        ...

    def worker_closed(self, worker: Worker) -> None:
        """The worker's socket closed (its worker_exit frame may still come)."""
        ...

    def kill_worker(self, worker: Worker) -> None:
        """Ask the supervisor to kill this worker and start a fresh one in its slot."""
        ...

    def loss(self, frame: dict[str, Any] | None) -> WorkerLoss:
        """How a worker died, from its worker_exit frame (None: nothing was said)."""
        ...


class PendingCall:
    """One call on a worker: the future the caller awaits and its deadline timer.

    The future's result is the worker's result frame, a WorkerLoss, or whatever the
    dispatcher's deadline handler puts there."""

    __slots__ = ("future", "id", "sent", "timer")

    def __init__(self, call_id: str, future: asyncio.Future[Any]) -> None:
        self.id = call_id
        self.future = future
        self.timer: asyncio.TimerHandle | None = None
        self.sent = 0.0  # perf_counter when the call was written to its worker


class Worker:
    """One worker process of a replica, seen through its socket."""

    __slots__ = (
        "_exit",
        "_explainer",
        "alive",
        "call",
        "channel",
        "lane",
        "lost_call_id",
        "memory",
        "number",
        "owner",
        "pid",
        "slot",
    )

    def __init__(
        self, owner: WorkerOwner, number: int, slot: int, pid: int, lane: int | None = None
    ) -> None:
        self.owner = owner
        self.number = number
        self.slot = slot
        self.pid = pid
        self.lane = lane  # its own socket to the egress proxy (its calls' HTTP logs)
        self.alive = True
        self.call: PendingCall | None = None
        self.lost_call_id: str | None = None  # the call in flight when its socket closed
        self.channel: wire.FrameProtocol | None = None
        self.memory: MemoryProbe | None = None  # its peak memory per call, where measured
        self._exit: asyncio.Future[WorkerLoss | None] = asyncio.get_running_loop().create_future()
        self._explainer: asyncio.Task[None] | None = None  # held: the loop keeps weak refs

    @property
    def usable(self) -> bool:
        """Free, alive, and its replica takes calls."""
        return self.alive and self.call is None and self.owner.accepting

    def send_call(self, data: bytes, call: PendingCall) -> bool:
        """Hand one encoded call frame to the worker; its answer resolves call.future.
        False when the socket is already closed: nothing was sent, try another worker."""
        channel = self.channel
        if channel is None or channel.transport is None or channel.transport.is_closing():
            self.alive = False
            return False
        self.call = call
        self.owner.call_started(self)
        if self.memory is not None:
            self.memory.reset()
        channel.send_bytes(data)
        return True

    def expire(self) -> PendingCall | None:
        """The running call passed its deadline: end it here and kill the worker."""
        call = self.call
        if call is not None:
            self._finish(call)
        self.kill()
        return call

    def kill(self) -> None:
        """Stop this worker: the supervisor SIGKILLs it and starts a fresh one in its
        slot. The late answer, if any, is never read."""
        if self.alive:
            self.alive = False
            self.owner.kill_worker(self)
        if self.channel is not None:
            self.channel.close()

    def on_frame(self, frame: dict[str, Any]) -> None:
        if frame.get("t") != "result":
            return  # pongs: nothing waits for them on this socket yet
        call = self.call
        if call is None or frame.get("id") != call.id:
            log.warning("%s: worker %d answered a call it was not given", self.owner, self.number)
            return
        self._finish(call)
        if self.memory is not None:  # the call's peak, for its execution record
            frame["peak_memory_bytes"] = self.memory.peak()
        if not call.future.done():
            call.future.set_result(frame)
        if self.alive:
            self.owner.worker_free(self)

    def on_close(self, exc: BaseException | None) -> None:
        was_alive = self.alive
        self.alive = False
        self.channel = None
        if exc is not None and was_alive:
            log.warning("%s: worker %d socket closed: %s", self.owner, self.number, exc)
        call = self.call
        if call is not None:
            self.lost_call_id = call.id
            self._finish(call)
            if not call.future.done():
                self._explainer = asyncio.get_running_loop().create_task(self._explain(call))
        self.owner.worker_closed(self)

    def exited(self, loss: WorkerLoss | None) -> None:
        """How the worker died, from its worker_exit frame (None: the replica is gone)."""
        if not self._exit.done():
            self._exit.set_result(loss)

    def _finish(self, call: PendingCall) -> None:
        self.call = None
        self.owner.call_ended(self)
        if call.timer is not None:
            call.timer.cancel()

    async def _explain(self, call: PendingCall) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._exit), LOSS_GRACE_S)
        loss = self._exit.result() if self._exit.done() else None
        if loss is None:
            loss = self.owner.loss(None)
        if not call.future.done():
            call.future.set_result(loss)

    def __repr__(self) -> str:
        return f"<Worker {self.owner.name}#{self.number} pid={self.pid}>"

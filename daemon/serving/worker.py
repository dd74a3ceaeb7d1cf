"""One worker of a replica as the daemon sees it: its socket, the calls it serves, and
how it died (`WorkerLoss`) when it dies under them.

A `Worker` carries up to `capacity` `PendingCall`s (the script's concurrency: 1 unless
set) and settles each one with the worker's result frame (matched by call id: results
may come in any order), with a WorkerLoss, or with `StoppedFor` when the worker was
killed because another of its calls would not end; the call's state machine
(deadline, errors) is the dispatcher's, in `PendingCall.answered`. A result frame
settles its call and runs `answered` at once, from the frame's read callback (after
the worker got its next call): no future, no loop callback per call. Every other
outcome runs `answered` from a later callback of the loop, as a future's would. A call
the worker never acknowledged (capacity > 1: its "started" frame) gets NOT_STARTED when
the worker is lost, and the dispatcher sends it to another worker.

With capacity > 1, calls are written back to back: the frames of one loop iteration
leave in one write. A call past its deadline is first cancelled in the worker
(`cancel`); the worker takes no new call until that call's answer comes, and is killed
if it does not come within the grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Protocol

from daemon.serving import wire
from daemon.serving.pending_call import NOT_STARTED, PendingCall, StoppedFor, WorkerLoss
from daemon.serving.process import MemoryProbe

log = logging.getLogger(__name__)

__all__ = ["LOSS_GRACE_S", "Worker", "WorkerOwner"]

LOSS_GRACE_S = 0.5  # how long a lost worker's call waits for "worker_exit" to name the cause


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


class Worker:
    """One worker process of a replica, seen through its socket."""

    __slots__ = (
        "_exit",
        "_explainer",
        "_loop",
        "_out",
        "_peak",
        "_peak_fresh",
        "alive",
        "calls",
        "cancelling",
        "capacity",
        "channel",
        "lane",
        "lost_call_id",
        "memory",
        "next_memory",
        "number",
        "owner",
        "pid",
        "slot",
        "stopped_for",
    )

    def __init__(
        self,
        owner: WorkerOwner,
        number: int,
        slot: int,
        pid: int,
        lane: int | None = None,
        capacity: int = 1,
    ) -> None:
        self.owner = owner
        self.number = number
        self.slot = slot
        self.pid = pid
        self.lane = lane  # its own socket to the egress proxy (its calls' HTTP logs)
        self.capacity = capacity  # calls in flight at most (the script's concurrency)
        self.alive = True
        self.calls: dict[str, PendingCall] = {}  # in flight, by id
        self.cancelling = 0  # calls cancelled whose answer has not come yet
        self.stopped_for: str | None = None  # the call it was killed for, if any
        self.lost_call_id: str | None = None  # a call in flight when its socket closed
        self.channel: wire.FrameProtocol | None = None
        self.memory: MemoryProbe | None = None  # its peak memory per call, where measured
        self.next_memory: MemoryProbe | None = None  # `memory` from its next call on
        self._loop = asyncio.get_running_loop()
        self._out: list[bytes] = []  # frames to write at the end of this loop iteration
        self._peak: int | None = None  # capacity > 1: the peak read in this loop iteration
        self._peak_fresh = False  # ... if it was read in this iteration
        self._exit: asyncio.Future[WorkerLoss | None] = self._loop.create_future()
        self._explainer: asyncio.Task[None] | None = None  # held: the loop keeps weak refs

    @property
    def usable(self) -> bool:
        """Alive, a call short of its capacity, no cancel pending, its replica takes calls."""
        return (
            self.alive
            and len(self.calls) < self.capacity
            and not self.cancelling
            and self.owner.accepting
        )

    @property
    def call(self) -> PendingCall | None:
        """The oldest call in flight (the only one at capacity 1)."""
        return next(iter(self.calls.values()), None)

    def send_call(self, data: bytes, call: PendingCall) -> bool:
        """Hand one encoded call frame to the worker; its answer settles the call.
        False when the socket is already closed: nothing was sent, try another worker."""
        channel = self.channel
        if channel is None or channel.transport is None or channel.transport.is_closing():
            self.alive = False
            return False
        calls = self.calls
        if calls:
            call.shared = True
            for other in calls.values():
                other.shared = True
        elif self.memory is not None:  # the peak of the calls until the worker is idle again
            self.memory.reset()
            self._peak_fresh = False
        elif self.next_memory is not None:  # moved during a call: measured from this one
            self.memory, self.next_memory = self.next_memory, None
            self.memory.reset()
            self._peak_fresh = False
        calls[call.id] = call
        self.owner.call_started(self)
        call.started = self.capacity == 1  # else the worker's "started" frame says so
        if self.capacity == 1:
            channel.send_bytes(data)
        else:
            self._write_soon(data)
        return True

    def measure_with(self, probe: MemoryProbe | None) -> None:
        """Its own memory cgroup, once it was moved there (a respawned worker serves
        before that): the calls that start from now on are measured, not one running."""
        if probe is None:
            return
        if not self.alive:
            probe.close()
        elif self.calls:
            self.next_memory = probe
        else:
            self.memory = probe

    def expire(self) -> PendingCall | None:
        """The running call passed its deadline: end it here and kill the worker
        (capacity 1: the worker has nothing else to lose)."""
        call = self.call
        if call is not None:
            self._finish(call)
        self.kill()
        return call

    def cancel(self, call: PendingCall, grace_s: float) -> None:
        """The call passed its deadline: ask the worker to end it, and kill the worker
        if its answer has not come within grace_s (calls beside it are lost then)."""
        if call.cancelled or self.calls.get(call.id) is not call:
            return
        call.cancelled = True
        self.cancelling += 1
        self._write_soon(wire.encode({"t": "cancel", "id": call.id}))
        call.timer = self._loop.call_later(grace_s, self._cancel_unanswered, call)

    def _cancel_unanswered(self, call: PendingCall) -> None:
        if self.calls.get(call.id) is call and self.alive:
            log.warning("%s: worker %d did not end call %s when cancelled: killing it",
                        self.owner, self.number, call.id)  # fmt: skip
            self.stopped_for = call.id
            self.kill()

    def kill(self) -> None:
        """Stop this worker: the supervisor SIGKILLs it and starts a fresh one in its
        slot. The late answer, if any, is never read; but while a call on it is not
        acknowledged, its socket is read on until the worker is gone (EOF): an ack it
        wrote before it died may wait there unread, and that call ran."""
        if self.alive:
            self.alive = False
            self.owner.kill_worker(self)
        if self.channel is not None and all(c.started for c in self.calls.values()):
            self.channel.close()

    def on_frame(self, frame: dict[str, Any]) -> None:
        kind = frame.get("t")
        if kind == "started":
            for cid in frame.get("ids") or ():
                started = self.calls.get(str(cid))
                if started is not None:
                    started.started = True
            return
        if kind != "result":
            return  # pongs: nothing waits for them on this socket yet
        call = self.calls.get(str(frame.get("id")))
        if call is None:
            log.warning("%s: worker %d answered a call it was not given", self.owner, self.number)
            return
        self._finish(call)
        if call.cancelled:  # its caller had its timeout already: the cancel worked
            self.cancelling -= 1
            if self.alive and not self.cancelling:
                for _ in range(self.capacity - len(self.calls)):  # slots refused meanwhile
                    self.owner.worker_free(self)
            return
        if self.memory is not None:  # the call's peak, for its execution record
            frame["peak_memory_bytes"] = (
                self.memory.peak() if self.capacity == 1 else self._shared_peak(self.memory)
            )
        settled = call.settle(frame)
        if self.alive and not self.cancelling:
            self.owner.worker_free(self)  # first: the worker gets its next call now
        if settled:
            try:
                call.answered()
            except Exception:  # as the loop would log a callback's: the next frames are read
                log.exception("%s: answering call %s failed", self.owner, call.id)

    def _shared_peak(self, memory: MemoryProbe) -> int | None:
        """Capacity > 1: the worker's peak memory since it was last idle, read at most
        once per loop iteration. Results come in batches (the frames of one read), a
        read of the cgroup is a system call, and calls in flight together share the
        peak anyway."""
        if not self._peak_fresh:
            self._peak, self._peak_fresh = memory.peak(), True
            self._loop.call_soon(self._forget_peak)
        return self._peak

    def _forget_peak(self) -> None:
        self._peak_fresh = False

    def on_close(self, exc: BaseException | None) -> None:
        was_alive = self.alive
        self.alive = False
        self.channel = None
        for probe in (self.memory, self.next_memory):  # its file stays open while it serves
            if probe is not None:
                probe.close()
        if exc is not None and was_alive:
            log.warning("%s: worker %d socket closed: %s", self.owner, self.number, exc)
        lost = []
        for call in list(self.calls.values()):
            self.lost_call_id = self.lost_call_id or call.id
            self._finish(call)
            if call.settled:
                continue
            if not call.started:  # never read: it can run elsewhere
                call.settle_soon(NOT_STARTED)
            elif self.stopped_for is not None:
                call.settle_soon(StoppedFor(self.stopped_for))
            else:
                lost.append(call)
        if lost:
            self._explainer = self._loop.create_task(self._explain(lost))
        self.owner.worker_closed(self)

    def exited(self, loss: WorkerLoss | None) -> None:
        """How the worker died, from its worker_exit frame (None: the replica is gone)."""
        if not self._exit.done():
            self._exit.set_result(loss)
        if self.channel is not None:  # a child of the worker may hold its socket open
            self._loop.call_later(LOSS_GRACE_S, self._close)

    def _close(self) -> None:
        if self.channel is not None:
            self.channel.close()

    def _finish(self, call: PendingCall) -> None:
        if self.calls.pop(call.id, None) is None:
            return
        self.owner.call_ended(self)
        if call.timer is not None:
            call.timer.cancel()

    def _write_soon(self, data: bytes) -> None:
        """Queue a frame: the frames of one loop iteration leave in one write."""
        if not self._out:
            self._loop.call_soon(self._flush)
        self._out.append(data)

    def _flush(self) -> None:
        data = b"".join(self._out)
        self._out.clear()
        channel = self.channel
        if channel is not None and channel.transport is not None:
            channel.send_bytes(data)  # a closed socket: on_close answers the calls

    async def _explain(self, calls: list[PendingCall]) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._exit), LOSS_GRACE_S)
        loss = self._exit.result() if self._exit.done() else None
        if loss is None:
            loss = self.owner.loss(None)
        for call in calls:
            call.settle_soon(loss)

    def __repr__(self) -> str:
        return f"<Worker {self.owner.name}#{self.number} pid={self.pid}>"

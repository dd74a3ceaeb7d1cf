"""Per-script call dispatch: a bounded queue in front of the idle workers, and one
authoritative deadline per call.

`Dispatcher.call` is what the gateway awaits (`submit` is the same with a callback:
the hot path's). It returns a `CallResult` or raises a
`CallError` subclass that carries the HTTP status and the JSON error body, so the gateway
maps every outcome at one place. Whatever the script does, every call ends: past its
deadline (the script's execution timeout, counted from arrival) it answers Timeout
and kills the worker (concurrency 1), or first cancels the call in its worker and
kills the worker only when that cancel is not answered within `cancel_grace_s`, the
calls beside it then failing with WorkerCrashed naming the call that would not end
(concurrency > 1); a worker that dies under a call answers WorkerCrashed or
OutOfMemory, unless it had not read the call yet (concurrency > 1: it acknowledges the
calls it reads), which is then sent to another worker within its own deadline; a
queue that is full or too slow answers QueueFull.

A worker is free while it has fewer calls in flight than the script's concurrency:
`offer` hands over one free slot, and `_idle` holds one entry per free slot.

The hot path is one pop from the idle deque, one orjson dump, one socket write and
the worker's result frame settling the call, whose `answered` maps the answer from
that frame's read callback: no future, task, coroutine or timer per call (one timer
per dispatcher fires when the earliest deadline or give-up is due and sweeps the
running and waiting calls), no I/O besides the worker socket. A call that
has to wait is encoded before it waits, and `offer` sends it on the worker that frees
up from inside that worker's result callback: the worker gets its next call at once,
not a loop iteration of other requests later, with the worker idle.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from daemon.config.daemon_config import Config
from daemon.serving import wire
from daemon.serving.call_errors import (
    CallError,
    QueueFull,
    Unavailable,
    UnknownFunction,
    queue_timeout,
)
from daemon.serving.call_outcome import TIMED_OUT, outcome_of
from daemon.serving.call_result import CallResult
from daemon.serving.pending_call import NOT_STARTED, PendingCall
from daemon.serving.worker import Worker

__all__ = [
    "CallResult",
    "DispatchSettings",
    "Dispatcher",
]


@dataclass(frozen=True)
class DispatchSettings:
    max_queue: int = Config.queue_max  # calls waiting for a free worker, per script
    max_wait_s: float = Config.queue_max_wait_s  # longest a call waits for a free worker
    # concurrency > 1: how long a worker has to end a cancelled call before it is killed
    cancel_grace_s: float = Config.cancel_grace_s


Done = Callable[["CallResult | CallError"], None]


class _Call(PendingCall):
    """A call of this dispatcher, from its arrival to its answer: its worker settles
    it, and `answered` calls `done` with the answer (or sends it again when its
    worker was lost before reading it)."""

    __slots__ = ("arrived", "data", "deadline", "dispatcher", "done", "give_up", "worker")

    def __init__(
        self, dispatcher: Dispatcher, cid: str, data: bytes, deadline: float, done: Done
    ) -> None:
        super().__init__(cid)
        self.dispatcher = dispatcher
        self.data = data  # the encoded frame (kept: a call not read is sent again)
        self.deadline = deadline  # loop time: the script's execution timeout
        self.give_up = deadline  # loop time: the latest it may wait for a worker
        self.arrived = time.perf_counter()  # for figures; loop.time() is coarse under uvloop
        self.done: Done | None = done  # None once called (or the caller went away)
        self.worker: Worker | None = None  # None while it waits for one

    def answered(self) -> None:
        self.dispatcher._answered(self)

    def finish(self, outcome: CallResult | CallError) -> None:
        done, self.done = self.done, None
        if done is not None:
            done(outcome)


class Dispatcher:
    """Calls of one script. Workers arrive through `offer`; calls through `call`,
    `run` (coroutines) or `submit` (a callback)."""

    def __init__(self, script: str, timeout_s: float, settings: DispatchSettings) -> None:
        self.script = script
        self.timeout_s = timeout_s
        self.settings = settings
        self.functions: frozenset[str] | None = None  # None: not known, let the worker say
        self._idle: deque[Worker] = deque()
        self._waiters: deque[_Call] = deque()
        self._running: set[_Call] = set()
        self._down: str | None = None
        self._ids = itertools.count(1)
        self._prefix = f"{os.getpid():x}-{int(time.time()):x}-"
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None  # the one timer: see _sweep
        self._timer_at = 0.0

    # --- workers in ---------------------------------------------------------
    def offer(self, worker: Worker) -> None:
        """A free worker: the oldest waiting call is sent to it now, else it goes idle."""
        waiters = self._waiters
        while waiters:
            call = waiters.popleft()
            if self._loop.time() >= call.deadline:  # the sweep has not come round yet
                self._fail(call, queue_timeout(self.timeout_s, call.arrived))
                continue
            if not self._start(worker, call):
                waiters.appendleft(call)  # the worker is dead: the call waits on
            return
        self._idle.append(worker)

    def drop_idle(self) -> None:
        """Forget every idle worker (after a switch of version: the old ones drain)."""
        self._idle.clear()

    @property
    def queued(self) -> int:
        """Calls waiting for a worker."""
        return len(self._waiters)

    def close(self, reason: str) -> None:
        """Refuse calls with Unavailable(reason): undeployed, or failing to start."""
        self._down = reason
        self._idle.clear()
        while self._waiters:
            self._fail(self._waiters.popleft(), Unavailable(reason))

    def open(self) -> None:
        self._down = None

    # --- calls --------------------------------------------------------------
    async def call(
        self,
        function: str,
        payload: Any = None,
        *,
        payload_json: bytes | None = None,
        call_id: str | None = None,
    ) -> CallResult:
        """Run `function` on a free worker. `payload` is a JSON-able object, or give
        `payload_json`: the JSON text of an object, already checked. Raises CallError."""
        fut: asyncio.Future[CallResult | CallError] = self._loop.create_future()
        call = self.submit(function, _settle(fut), payload, payload_json=payload_json,
                           call_id=call_id)  # fmt: skip
        return await self._wait(call, fut)

    async def run(self, inputs_json: bytes, *, call_id: str | None = None) -> CallResult:
        """Run a code step on a free worker: `inputs_json` is the JSON text of its
        typed inputs, already checked. The result's frame holds outputs_json and the
        logs; a step that raised is a FunctionError (its frame has the partial outputs)."""
        if self._down is not None:
            raise Unavailable(self._down)
        cid = call_id or f"{self._prefix}{next(self._ids)}"
        data = wire.encode_run(cid, time.time() + self.timeout_s, inputs_json)
        fut: asyncio.Future[CallResult | CallError] = self._loop.create_future()
        return await self._wait(self._send(cid, data, _settle(fut)), fut)

    def submit(
        self,
        function: str,
        done: Done,
        payload: Any = None,
        *,
        payload_json: bytes | None = None,
        call_id: str | None = None,
    ) -> _Call:
        """`call` without a coroutine: `done` gets the CallResult or the CallError,
        once, from a later callback of the loop. Raises CallError at once when the
        call is refused before it is queued (down, unknown function, queue full)."""
        if self._down is not None:
            raise Unavailable(self._down)
        if self.functions is not None and function not in self.functions:
            raise UnknownFunction(f"script {self.script!r} has no function {function!r}")
        cid = call_id or f"{self._prefix}{next(self._ids)}"
        wall_deadline = time.time() + self.timeout_s
        data = wire.encode_call(cid, function, wall_deadline, payload, payload_json)
        return self._send(cid, data, done)

    async def _wait(self, call: _Call, fut: asyncio.Future[CallResult | CallError]) -> CallResult:
        try:
            outcome = await fut
        except asyncio.CancelledError:
            # Sent already (the caller went away just then): the call runs to its end
            # and frees its worker; else it leaves the queue.
            self._abandon(call)
            raise
        if isinstance(outcome, CallError):
            raise outcome
        return outcome

    def _send(self, cid: str, data: bytes, done: Done) -> _Call:
        """Send an encoded frame to a free worker, or queue it."""
        call = _Call(self, cid, data, self._loop.time() + self.timeout_s, done)
        if not self._dispatch(call):
            self._queue(call)
        return call

    def _dispatch(self, call: _Call) -> bool:
        """Send the call to an idle worker; False if none is idle."""
        worker = self._take()
        while worker is not None:
            if self._start(worker, call):
                return True
            worker = self._take()  # that one's socket had closed
        return False

    def _start(self, worker: Worker, call: _Call) -> bool:
        """Send the call to the worker and count it running (the sweep watches its
        deadline); False if the worker's socket had closed (nothing was sent)."""
        if not worker.send_call(call.data, call):
            return False
        call.sent = time.perf_counter()
        call.worker = worker
        self._running.add(call)
        self._arm(call.deadline)
        return True

    def _take(self) -> Worker | None:
        idle = self._idle
        while idle:
            worker = idle.popleft()
            if worker.usable:
                return worker
        return None

    def _queue(self, call: _Call) -> None:
        """Wait for `offer` to send it, or for the sweep to give up on it."""
        if len(self._waiters) >= self.settings.max_queue:
            raise QueueFull(
                f"script {self.script!r} has {self.settings.max_queue} calls waiting for a "
                "free worker already; retry later"
            )
        arrived_at = call.deadline - self.timeout_s
        call.give_up = min(arrived_at + self.settings.max_wait_s, call.deadline)
        self._waiters.append(call)
        self._arm(call.give_up)

    def _again(self, call: _Call) -> None:
        """Its worker was lost before reading it: send it again, same deadline."""
        call.unsettle()
        call.worker = None
        if self._dispatch(call):
            return
        try:
            self._queue(call)
        except QueueFull as exc:
            exc.queue_ms = (time.perf_counter() - call.arrived) * 1000
            self._fail(call, exc)

    def _abandon(self, call: _Call) -> None:
        call.done = None
        if call.worker is None:  # not sent: it leaves the queue
            with contextlib.suppress(ValueError):
                self._waiters.remove(call)

    # --- the one timer: deadlines of running calls, give-ups of waiting ones ---------
    def _arm(self, at: float) -> None:
        """The timer fires at the earliest time anything is due (one per dispatcher,
        not one per call: a call is counted in a set and the sweep looks at them all)."""
        timer = self._timer
        if timer is not None:
            if at >= self._timer_at:
                return
            timer.cancel()
        self._timer = self._loop.call_at(at, self._sweep)
        self._timer_at = at

    def _sweep(self) -> None:
        """Expire running calls past their deadline, give up on waiting ones past
        theirs, and arm the timer for the next that is due. Calls are few (running:
        concurrency per worker; waiting: at most max_queue) and most end long before,
        so the timer rarely fires more than once per timeout."""
        self._timer = None
        now = self._loop.time()
        # Not live: answered (its callback is next), or its worker died under it (the
        # cause is on its way, within LOSS_GRACE_S): neither is timed out here.
        live = [(c, w) for c in self._running if (w := c.worker) and w.calls.get(c.id) is c]
        for call, worker in live:
            if call.deadline <= now:
                self._expire(worker, call)
        waiting = [call for call in self._waiters if call.give_up <= now]
        for call in waiting:
            self._waiters.remove(call)
            self._give_up(call)
        times = [c.deadline for c, _ in live if c.deadline > now]
        times += [c.give_up for c in self._waiters]
        if times:
            self._arm(min(times))

    def _give_up(self, call: _Call) -> None:
        if call.give_up >= call.deadline:
            exc: CallError = queue_timeout(self.timeout_s, call.arrived)
        else:
            exc = QueueFull(
                f"no worker of script {self.script!r} was free within "
                f"{self.settings.max_wait_s:g} s; retry later"
            )
            exc.queue_ms = (time.perf_counter() - call.arrived) * 1000
        self._fail(call, exc)

    def _fail(self, call: _Call, exc: CallError) -> None:
        """A call that never reached a worker ends with `exc` (from the next callback,
        as every outcome but a result does)."""
        self._loop.call_soon(call.finish, exc)

    def _expire(self, worker: Worker, call: PendingCall) -> None:
        """The deadline passed while the worker ran the call: kill that worker only
        (concurrency 1), or cancel the call in it first (concurrency > 1)."""
        if worker.capacity == 1:
            worker.expire()
        else:
            worker.cancel(call, self.settings.cancel_grace_s)
        call.settle_soon(TIMED_OUT)

    def _answered(self, call: _Call) -> None:
        """The call is settled (by its worker, or by _expire): its outcome."""
        self._running.discard(call)
        worker = call.worker
        if call.done is None or worker is None:
            return  # the caller went away
        outcome = call.outcome
        if outcome is NOT_STARTED:
            self._again(call)
            return
        queue_ms = (call.sent - call.arrived) * 1000
        run_ms = (time.perf_counter() - call.sent) * 1000
        call.finish(outcome_of(outcome, call, worker, queue_ms, run_ms, self.timeout_s,
                               self.settings.cancel_grace_s))  # fmt: skip


def _settle(fut: asyncio.Future[CallResult | CallError]) -> Done:
    """A done callback that resolves `fut` (unless its waiter went away)."""

    def settle(outcome: CallResult | CallError) -> None:
        if not fut.done():
            fut.set_result(outcome)

    return settle

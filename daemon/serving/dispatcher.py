"""Per-script call dispatch: a bounded queue in front of the idle workers, and one
authoritative deadline per call.

`Dispatcher.call` is what the gateway awaits. It returns a `CallResult` or raises a
`CallError` subclass that carries the HTTP status and the JSON error body, so the gateway
maps every outcome at one place. Whatever the script does, every call ends: the
deadline timer (the script's execution timeout, counted from arrival) answers Timeout
and kills the worker (concurrency 1), or first cancels the call in its worker and
kills the worker only when that cancel is not answered within `cancel_grace_s`, the
calls beside it then failing with WorkerCrashed naming the call that would not end
(concurrency > 1); a worker that dies under a call answers WorkerCrashed or
OutOfMemory, unless it had not read the call yet (concurrency > 1: it acknowledges the
calls it reads), which is then sent to another worker within its own deadline; a
queue that is full or too slow answers QueueFull.

A worker is free while it has fewer calls in flight than the script's concurrency:
`offer` hands over one free slot, and `_idle` holds one entry per free slot.

The hot path is one pop from the idle deque, one orjson dump, one socket write,
one timer and one future: no tasks, no threads, no I/O besides the worker socket.
A call that has to wait is encoded before it waits, and `offer` sends it on the worker
that frees up from inside that worker's result callback: the worker gets its next call
at once, not after the event loop has come round to the waiting coroutine (which under
load is a whole loop iteration of other requests later, with the worker idle).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from daemon.config.daemon_config import Config
from daemon.serving import wire
from daemon.serving.call_errors import (
    CallError,
    FunctionError,
    OutOfMemory,
    QueueFull,
    Timeout,
    Unavailable,
    UnknownFunction,
    WorkerCrashed,
)
from daemon.serving.worker import NOT_STARTED, PendingCall, StoppedFor, Worker, WorkerLoss

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
    cancel_grace_s: float = 2.0


@dataclass(slots=True)
class CallResult:
    id: str
    value: Any
    stdout: str
    stderr: str
    truncated: bool
    cpu_ms: float
    wall_ms: float  # inside the worker
    queue_ms: float  # waiting for a free worker
    run_ms: float  # from sending the call to its answer
    worker_pid: int
    replica: str
    frame: dict[str, Any] = field(default_factory=dict)  # the worker's whole result
    egress_lane: int | None = None  # the worker's socket to the egress proxy, if its own
    shared: bool = False  # other calls ran on the same worker meanwhile (its HTTP log too)


_TIMED_OUT = object()


class _Waiter:
    """A call waiting for a free worker, encoded and ready to send."""

    __slots__ = ("arrived", "call", "data", "deadline", "future")

    def __init__(
        self,
        future: asyncio.Future[Worker],
        call: PendingCall,
        data: bytes,
        deadline: float,
        arrived: float,
    ) -> None:
        self.future = future  # done with the worker the call was sent to, or an error
        self.call = call
        self.data = data
        self.deadline = deadline  # loop time
        self.arrived = arrived  # perf_counter


MiB = 1024 * 1024


def _mib(n: int | None) -> str:
    if n is None:
        return "the memory limit"
    return f"the {n / MiB:.0f} MiB memory limit"


class Dispatcher:
    """Calls of one script. Workers arrive through `offer`; calls through `call`."""

    def __init__(self, script: str, timeout_s: float, settings: DispatchSettings) -> None:
        self.script = script
        self.timeout_s = timeout_s
        self.settings = settings
        self.functions: frozenset[str] | None = None  # None: not known, let the worker say
        self._idle: deque[Worker] = deque()
        self._waiters: deque[_Waiter] = deque()
        self._down: str | None = None
        self._ids = itertools.count(1)
        self._prefix = f"{os.getpid():x}-{int(time.time()):x}-"
        self._loop = asyncio.get_running_loop()

    # --- workers in ---------------------------------------------------------
    def offer(self, worker: Worker) -> None:
        """A free worker: the oldest waiting call is sent to it now, else it goes idle."""
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            fut = waiter.future
            if fut.done():
                continue
            if self._loop.time() >= waiter.deadline:  # its give-up timer is late
                fut.set_exception(self._queue_timeout(waiter.arrived))
                continue
            if not self._start(worker, waiter.call, waiter.data, waiter.deadline):
                waiters.appendleft(waiter)  # the worker is dead: the call waits on
                return
            fut.set_result(worker)
            return
        self._idle.append(worker)

    def drop_idle(self) -> None:
        """Forget every idle worker (after a switch of version: the old ones drain)."""
        self._idle.clear()

    @property
    def queued(self) -> int:
        """Calls waiting for a worker (a waiter leaves the deque when it is done)."""
        return len(self._waiters)

    def close(self, reason: str) -> None:
        """Refuse calls with Unavailable(reason): undeployed, or failing to start."""
        self._down = reason
        self._idle.clear()
        while self._waiters:
            fut = self._waiters.popleft().future
            if not fut.done():
                fut.set_exception(Unavailable(reason))

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
        if self._down is not None:
            raise Unavailable(self._down)
        if self.functions is not None and function not in self.functions:
            raise UnknownFunction(f"script {self.script!r} has no function {function!r}")
        cid = call_id or f"{self._prefix}{next(self._ids)}"
        wall_deadline = time.time() + self.timeout_s
        data = wire.encode_call(cid, function, wall_deadline, payload, payload_json)
        return await self._send(cid, data)

    async def run(self, inputs_json: bytes, *, call_id: str | None = None) -> CallResult:
        """Run a code step on a free worker: `inputs_json` is the JSON text of its
        typed inputs, already checked. The result's frame holds outputs_json and the
        logs; a step that raised is a FunctionError (its frame has the partial outputs)."""
        if self._down is not None:
            raise Unavailable(self._down)
        cid = call_id or f"{self._prefix}{next(self._ids)}"
        data = wire.encode_run(cid, time.time() + self.timeout_s, inputs_json)
        return await self._send(cid, data)

    async def _send(self, cid: str, data: bytes) -> CallResult:
        """Send an encoded frame to a free worker (or queue it) and wait for its answer."""
        loop = self._loop
        arrived = time.perf_counter()  # for figures; loop.time() is coarse under uvloop
        t0 = loop.time()
        deadline = t0 + self.timeout_s
        while True:
            call = PendingCall(cid, loop.create_future())
            worker = self._take()
            while worker is not None and not self._start(worker, call, data, deadline):
                worker = self._take()  # that one's socket had closed
            if worker is None:
                waiter = _Waiter(loop.create_future(), call, data, deadline, arrived)
                worker = await self._wait_for_worker(waiter, t0)
            outcome = await call.future
            if outcome is not NOT_STARTED:
                break  # else its worker was lost before reading it: again, same deadline
        done = time.perf_counter()
        queue_ms, run_ms = (call.sent - arrived) * 1000, (done - call.sent) * 1000
        return self._outcome(outcome, call, worker, queue_ms, run_ms)

    def _start(self, worker: Worker, call: PendingCall, data: bytes, deadline: float) -> bool:
        """Send the call to the worker and arm its deadline; False if the worker's
        socket had closed (nothing was sent)."""
        if not worker.send_call(data, call):
            return False
        call.sent = time.perf_counter()
        call.timer = self._loop.call_at(deadline, self._expire, worker, call)
        return True

    def _take(self) -> Worker | None:
        idle = self._idle
        while idle:
            worker = idle.popleft()
            if worker.usable:
                return worker
        return None

    async def _wait_for_worker(self, waiter: _Waiter, t0: float) -> Worker:
        """Queue the call; `offer` sends it and returns the worker it runs on."""
        if self.queued >= self.settings.max_queue:
            raise QueueFull(
                f"script {self.script!r} has {self.settings.max_queue} calls waiting for a "
                "free worker already; retry later"
            )
        self._waiters.append(waiter)
        give_up = min(t0 + self.settings.max_wait_s, waiter.deadline)
        at_deadline = give_up >= waiter.deadline
        timer = self._loop.call_at(give_up, self._give_up, waiter, t0, at_deadline)
        try:
            return await waiter.future
        except asyncio.CancelledError:
            # Sent already (the caller went away just then): the call runs to its end
            # and frees its worker; else it leaves the queue.
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)
            raise
        finally:
            timer.cancel()

    def _give_up(self, waiter: _Waiter, t0: float, at_deadline: bool) -> None:
        fut = waiter.future
        if fut.done():
            return
        with contextlib.suppress(ValueError):
            self._waiters.remove(waiter)
        if at_deadline:
            exc: CallError = self._queue_timeout(None)
        else:
            exc = QueueFull(
                f"no worker of script {self.script!r} was free within "
                f"{self.settings.max_wait_s:g} s; retry later"
            )
        exc.queue_ms = (self._loop.time() - t0) * 1000
        fut.set_exception(exc)

    def _queue_timeout(self, arrived: float | None) -> Timeout:
        exc = Timeout(
            f"the call waited for a free worker past the script's execution timeout "
            f"of {self.timeout_s:g} s"
        )
        if arrived is not None:
            exc.queue_ms = (time.perf_counter() - arrived) * 1000
        return exc

    def _expire(self, worker: Worker, call: PendingCall) -> None:
        """The deadline passed while the worker ran the call: kill that worker only
        (concurrency 1), or cancel the call in it first (concurrency > 1)."""
        if worker.calls.get(call.id) is call:
            if worker.capacity == 1:
                worker.expire()
            else:
                worker.cancel(call, self.settings.cancel_grace_s)
        if not call.future.done():
            call.future.set_result(_TIMED_OUT)

    def _outcome(
        self, outcome: Any, call: PendingCall, worker: Worker, queue_ms: float, run_ms: float
    ) -> CallResult:
        cid = call.id
        if type(outcome) is dict:
            if outcome.get("ok"):
                return CallResult(
                    cid,
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
            exc: CallError = FunctionError(outcome)
        elif outcome is _TIMED_OUT:
            exc = self._timeout_error(worker)
        elif isinstance(outcome, StoppedFor):
            exc = self._stopped_error(worker, outcome)
        else:
            exc = self._loss_error(outcome)
        exc.queue_ms, exc.run_ms = queue_ms, run_ms
        exc.replica = worker.owner.name
        exc.egress_lane = worker.lane
        exc.shared = call.shared
        raise exc

    def _timeout_error(self, worker: Worker) -> Timeout:
        ended = "its worker was stopped"
        if worker.capacity > 1:
            grace = self.settings.cancel_grace_s
            ended = (f"it was cancelled in its worker (which is stopped if the call does "
                     f"not end within {grace:g} s)")  # fmt: skip
        return Timeout(
            f"the call did not finish within the script's execution timeout of "
            f"{self.timeout_s:g} s; {ended}"
        )

    def _stopped_error(self, worker: Worker, stopped: StoppedFor) -> WorkerCrashed:
        return WorkerCrashed(
            f"the worker running the call was stopped: call {stopped.call_id}, running on "
            f"the same worker (concurrency {worker.capacity}), passed the script's execution "
            f"timeout of {self.timeout_s:g} s and did not end within "
            f"{self.settings.cancel_grace_s:g} s of being cancelled",
            stopped_for=stopped.call_id,
        )

    def _loss_error(self, loss: WorkerLoss) -> CallError:
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

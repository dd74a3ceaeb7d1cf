"""The worker loop of asynchronous calls: takes queued calls from the store and runs
them through the same serving path as synchronous calls (daemon/gateway/async_attempt.py),
tries failed ones again, marks the old ones expired, and POSTs results to callback URLs.

- Share of workers: a script's async calls hold at most `async.max_worker_share` of
  its workers (replicas x workers per replica, at least one call), so synchronous
  calls always find workers; they wait in the same dispatcher queue as synchronous
  calls and count toward its limit. A full queue or a script that does not serve
  leaves the call queued (no attempt counted), tried again after `async.poll_s`.
- Retries: an attempt that ends in error, timeout, out of memory or a crash is tried
  again, up to the call's retries (the script's `async.retries` when it was accepted),
  after `async.retry_backoff_s`, doubled each time. A call that fails its last attempt
  is a dead letter (`dead`), and so is a call still queued past its maximum event age
  (status expired). `scriptctl executions retry ID` queues a dead letter again.
- Callbacks: an ended call with a callback URL (canceled ones excepted) is POSTed to it
  through the script's egress policy, signed (daemon/egress/callback.py), up to
  `async.callback_attempts` times with a doubling backoff; every delivery is recorded.
- At least once: at start, calls a stopped daemon left running are queued again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from typing import Any

import orjson

from daemon.config.daemon_config import Config
from daemon.core.async_calls import (
    CB_DELIVERED,
    CB_FAILED,
    CB_PENDING,
    EXPIRED,
    FAILED,
    QUEUED,
    SUCCEEDED,
    TIMED_OUT,
    AsyncCall,
    Delivery,
)
from daemon.core.models import now_iso
from daemon.egress.callback import CallbackSender
from daemon.gateway.app import EXECUTION_HEADER, Gateway
from daemon.gateway.async_attempt import BUSY, Attempt, run_attempt
from daemon.gateway.async_intake import AsyncIntake
from daemon.metrics.readings import AsyncQueueReading
from daemon.serving.replica_runner import ServingVersion

__all__ = ["AsyncLoop"]

log = logging.getLogger(__name__)

_END_STATUS = {"ok": SUCCEEDED, "timeout": TIMED_OUT}  # anything else: failed
_RETRIED = frozenset(("error", "timeout", "oom", "crashed"))
_BATCH = 200


class AsyncLoop:
    """`start()` once the gateway serves, `close()` before the replicas stop."""

    def __init__(
        self,
        config: Config,
        gateway: Gateway,
        intake: AsyncIntake,
        sender: CallbackSender,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.gateway = gateway
        self.store = gateway.store
        self.sender = sender
        self.clock = clock
        self._wake = asyncio.Event()
        intake.wake = self._wake.set
        self._running: dict[str, int] = {}  # script -> attempts in flight
        self._busy: set[str] = set()  # call ids of attempts and deliveries in flight
        self._tasks: set[asyncio.Task[None]] = set()
        self._main: asyncio.Task[None] | None = None
        self._queued: tuple[int, int | None] = (0, None)  # calls queued, oldest received_ms

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    async def start(self) -> None:
        requeued = await asyncio.to_thread(self.store.requeue_running_async_calls)
        if requeued:
            log.info("async calls: %d left running by the last run are queued again", requeued)
        self._main = asyncio.create_task(self._run(), name="async-calls")

    async def close(self) -> None:
        """Stop taking calls; attempts in flight are cut (queued again at the next start)."""
        tasks = [t for t in (self._main, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _run(self) -> None:
        while True:
            try:
                await self._pass()
                timeout = await self._idle_time()
            except Exception:
                log.exception("async calls: a pass of the loop failed")
                timeout = self.config.async_poll_s
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            self._wake.clear()

    async def _idle_time(self) -> float:
        """Seconds until something is due (at most async.poll_s)."""
        poll = self.config.async_poll_s
        due = await asyncio.to_thread(self.store.next_async_due_ms)
        now = self._now_ms()
        if due is None or due <= now:  # nothing, or only calls that wait for a worker
            return poll
        return min(poll, (due - now) / 1000)

    def queue_reading(self) -> AsyncQueueReading:
        """The queue as of the loop's last pass, for metrics (no SQL on the loop)."""
        depth, oldest = self._queued
        if oldest is None:
            return AsyncQueueReading(depth)
        return AsyncQueueReading(depth, max(0.0, self.clock() - oldest / 1000))

    async def _pass(self) -> None:
        now = self._now_ms()
        await asyncio.to_thread(self.store.expire_async_calls, now)
        stats = await asyncio.to_thread(self.store.async_queue_stats)
        oldest = min((at for _, at in stats.values()), default=None)
        self._queued = (sum(n for n, _ in stats.values()), oldest)
        if len(self._tasks) < self.config.async_max_concurrency:
            full = self._full_scripts()
            due = await asyncio.to_thread(self.store.due_async_calls, now, _BATCH, full)
            for call in due:
                if len(self._tasks) >= self.config.async_max_concurrency:
                    break
                await self._consider(call, now)
        for call in await asyncio.to_thread(self.store.due_callbacks, now, _BATCH):
            if call.id not in self._busy:
                self._spawn(call.id, self._deliver(call))

    async def _consider(self, call: AsyncCall, now: int) -> None:
        if call.id in self._busy:
            return
        if now - call.received_ms > call.max_age_ms:
            await self._expire(call, now)
            return
        serving = self.gateway.routes.serving(call.script)
        if serving is None:  # not deployed (yet, or any more): it waits, then expires
            await self._defer(call.id, now)
            return
        if self._running.get(call.script, 0) >= self.share(serving):
            return  # the script's share of workers is taken: a finishing attempt wakes us
        self._running[call.script] = self._running.get(call.script, 0) + 1
        self._spawn(call.id, self._attempt(call, serving), call.script)

    def _full_scripts(self) -> list[str]:
        """Scripts whose async calls hold their whole share of workers now."""
        full = []
        for script, running in self._running.items():
            serving = self.gateway.routes.serving(script)
            if running and (serving is None or running >= self.share(serving)):
                full.append(script)
        return full

    def share(self, serving: ServingVersion) -> int:
        """How many async calls of the script may run at once."""
        per_replica = max(1, int(serving.target.profile.vcpus))
        workers = max(1, len(serving.pool.replicas())) * per_replica
        return max(1, math.floor(workers * self.config.async_max_worker_share))

    def _spawn(self, call_id: str, work: Any, script: str | None = None) -> None:
        self._busy.add(call_id)
        task = asyncio.create_task(work, name=f"async-{call_id}")
        self._tasks.add(task)

        def done(t: asyncio.Task[None]) -> None:
            self._tasks.discard(t)
            self._busy.discard(call_id)
            if script is not None:
                self._running[script] -= 1
            if not t.cancelled() and t.exception() is not None:
                log.error("async call %s: %s", call_id, t.exception())
            self._wake.set()

        task.add_done_callback(done)

    async def _defer(self, call_id: str, now: int) -> None:
        next_ms = now + int(self.config.async_poll_s * 1000)
        await asyncio.to_thread(self.store.end_async_attempt, call_id, None,
                                status=QUEUED, next_ms=next_ms)  # fmt: skip

    async def _expire(self, call: AsyncCall, now: int) -> None:
        error = {"type": "expired", "message": f"the call waited past the script's maximum "
                 f"event age of {call.max_age_ms // 1000} s without succeeding"}  # fmt: skip
        await asyncio.to_thread(
            self.store.end_async_attempt, call.id, None, status=EXPIRED, dead=1, ended_ms=now,
            error_json=orjson.dumps(error).decode(), **self._callback_due(call, now),
        )  # fmt: skip

    @staticmethod
    def _callback_due(call: AsyncCall, now: int) -> dict[str, Any]:
        if call.callback_url is None:
            return {}
        return {"callback_state": CB_PENDING, "callback_next_ms": now}

    async def _attempt(self, call: AsyncCall, serving: ServingVersion) -> None:
        store = self.store
        if not await asyncio.to_thread(store.start_async_attempt, call.id, self._now_ms()):
            return  # canceled meanwhile
        started = now_iso()
        attempt = await run_attempt(self.gateway, serving, call)
        now = self._now_ms()
        if attempt.status == BUSY:
            await self._defer(call.id, now)
            return
        entry = attempt.log_entry(started, now_iso())
        await asyncio.to_thread(store.end_async_attempt, call.id, entry,
                                **self._after(call, attempt, now))  # fmt: skip

    def _after(self, call: AsyncCall, attempt: Attempt, now: int) -> dict[str, Any]:
        """The columns an attempt's end sets: a retry, or the call's end."""
        tried = call.attempts + 1
        error = None if attempt.error is None else orjson.dumps(attempt.error).decode()
        if attempt.status in _RETRIED and tried <= call.max_retries:
            backoff = self.config.async_retry_backoff_s * 2 ** (tried - 1)
            return {"status": QUEUED, "next_ms": now + int(backoff * 1000), "error_json": error}
        status = _END_STATUS.get(attempt.status, FAILED)
        return {
            "status": status, "dead": int(status != SUCCEEDED), "ended_ms": now,
            "result_json": attempt.result_json, "error_json": error,
            **self._callback_due(call, now),
        }  # fmt: skip

    # --- callbacks -------------------------------------------------------------------
    async def _deliver(self, due: AsyncCall) -> None:
        store = self.store
        call = await asyncio.to_thread(store.get_async_call, due.id)
        script = await asyncio.to_thread(store.get_script_by_id, due.script_id)
        if call is None or script is None or call.callback_url is None:
            return
        secret = await asyncio.to_thread(store.callback_secret, call.script_id)
        serving = self.gateway.routes.serving(call.script)
        egress = serving.target.egress if serving is not None else script.settings.egress
        body, headers = callback_message(call)
        result = await self.sender.post(call.callback_url, body, headers, secret, egress)
        tries = call.callback_tries + 1
        next_ms: int | None = None
        if result.delivered:
            state = CB_DELIVERED
        elif tries >= self.config.async_callback_attempts:
            state = CB_FAILED
        else:
            state = CB_PENDING
            backoff = self.config.async_callback_backoff_s * 2 ** (tries - 1)
            next_ms = self._now_ms() + int(backoff * 1000)
        delivery = Delivery(now_iso(), tries, result.status_code, result.error, result.duration_ms)
        await asyncio.to_thread(store.record_delivery, call.id, delivery, state, next_ms)


def callback_message(call: AsyncCall) -> tuple[bytes, dict[str, str]]:
    """The callback's JSON body (the call as GET /v1/executions/{id} shows it, without
    the callback part) and its headers (the signature is added by the sender)."""
    doc = call.to_json()
    doc.pop("callback", None)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "scriptd-callback",
        EXECUTION_HEADER: call.id,
        "X-Scriptd-Status": call.status,
        "X-Scriptd-Duration-Ms": str(call.duration_ms if call.duration_ms is not None else 0),
    }
    return orjson.dumps(doc), headers

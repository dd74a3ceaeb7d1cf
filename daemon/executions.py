"""Execution records: every call the gateway answers, written to the store in batches.

The gateway's hot path only appends a `Call` (raw figures, no formatting) to a bounded
buffer. A background task turns the buffer into `ExecutionRow`s and writes them with
`store.insert_executions` in a thread, every `every_s` or as soon as `batch` records
wait, together with the KeyChecker's last-used times (`take_last_used`). When the store
falls behind and the buffer holds `max_buffer` records or `max_buffer_bytes` of outputs
and results, the oldest records are dropped and counted (`dropped`), so memory stays
bounded whatever the store does. `close()` writes what is left (on shutdown).

Captured stdout/stderr are cut to `output_bytes` characters per stream as they are
recorded (a marker says so), and a result is kept only when its JSON fits in as many
bytes (the gateway knows its size: it just encoded it). Rows are formatted in the
writing thread, not on the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from dataclasses import dataclass
from typing import Any, Protocol

from daemon.keys_checker import KeyChecker
from daemon.store_keys import ExecutionRow, iso_from_unix

log = logging.getLogger(__name__)

__all__ = ["Call", "ExecutionRecorder", "RecordStore"]


class RecordStore(Protocol):
    def insert_executions(self, rows: list[ExecutionRow]) -> int: ...
    def touch_api_keys_last_used(self, used: dict[str, float]) -> None: ...


@dataclass(slots=True)
class Call:
    """One answered call, as the gateway saw it (unix seconds, milliseconds)."""

    id: str
    script_id: int
    version: int
    function: str
    key_name: str | None
    status: str  # ok / error / timeout / oom / crashed / rejected
    received_at: float
    queue_ms: float | None
    run_ms: float | None
    cpu_ms: float | None
    input_bytes: int
    result: Any = None
    error: dict[str, Any] | None = None  # {"type", "message", "traceback"?, ...}
    stdout: str = ""
    stderr: str = ""
    peak_memory_bytes: int | None = None
    weight: int = 0  # bytes it holds in the buffer (set by record)


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n[cut: {len(text) - limit} more characters not kept]"


def to_row(call: Call, limit: int) -> ExecutionRow:
    """A Call as the store's row: times formatted, the traceback cut to `limit`
    characters (stdout/stderr were cut when recorded)."""
    started = ended = None
    if call.queue_ms is not None:
        started_s = call.received_at + call.queue_ms / 1000
        started = iso_from_unix(started_s)
        if call.run_ms is not None:
            ended = iso_from_unix(started_s + call.run_ms / 1000)
    error = call.error
    if error is not None and "traceback" in error:
        error = {**error, "traceback": _cut(str(error["traceback"]), limit)}
    logs = call.stdout
    if call.stderr:
        logs += "\n[stderr]\n" + call.stderr
    return ExecutionRow(
        id=call.id,
        script_id=call.script_id,
        version=call.version,
        function=call.function,
        key_name=call.key_name,
        status=call.status,
        received_at=iso_from_unix(call.received_at),
        started_at=started,
        ended_at=ended,
        queue_ms=call.queue_ms,
        wall_ms=call.run_ms,
        cpu_ms=call.cpu_ms,
        peak_memory_bytes=call.peak_memory_bytes,
        input_bytes=call.input_bytes,
        result=call.result,
        error=error,
        logs=logs or None,
    )


class ExecutionRecorder:
    """The buffer and its writer task. `start()` on the loop, `record()` per call,
    `await close()` at shutdown."""

    def __init__(
        self,
        store: RecordStore,
        keys: KeyChecker | None = None,
        *,
        every_s: float = 0.5,
        batch: int = 200,
        max_buffer: int = 20_000,
        max_buffer_bytes: int = 64 << 20,
        output_bytes: int = 64 << 10,
    ) -> None:
        self.store = store
        self.keys = keys
        self.every_s = every_s
        self.batch = batch
        self.output_bytes = output_bytes
        self.max_buffer = max_buffer
        self.max_buffer_bytes = max_buffer_bytes
        self._buffer: deque[Call] = deque()
        self._bytes = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.dropped = 0  # records lost because the buffer was full
        self.written = 0

    def record(self, call: Call) -> None:
        limit = self.output_bytes
        if len(call.stdout) > limit:
            call.stdout = _cut(call.stdout, limit)
        if len(call.stderr) > limit:
            call.stderr = _cut(call.stderr, limit)
        call.weight = 256 + len(call.stdout) + len(call.stderr)
        buffer = self._buffer
        buffer.append(call)
        self._bytes += call.weight
        while len(buffer) > self.max_buffer or self._bytes > self.max_buffer_bytes:
            self._bytes -= buffer.popleft().weight
            self.dropped += 1
            if self.dropped in (1, 100) or self.dropped % 10_000 == 0:
                log.warning("execution records: store behind, %d dropped so far", self.dropped)
        if len(buffer) >= self.batch:
            self._wake.set()

    def keep_result(self, value: Any, encoded_bytes: int) -> Any:
        """What to record of a result whose JSON is `encoded_bytes` long."""
        if encoded_bytes <= self.output_bytes:
            return value
        return {
            "not_kept": f"the result was {encoded_bytes} bytes of JSON, over {self.output_bytes}"
        }

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="executions")

    async def _run(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.every_s)
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        """Write every buffered record and the keys' last-used times (in a thread)."""
        calls = list(self._buffer)
        self._buffer.clear()
        self._bytes = 0
        used = self.keys.take_last_used() if self.keys is not None else {}
        if not calls and not used:
            return
        try:
            await asyncio.to_thread(self._write, calls, used)
        except Exception:
            log.exception("writing %d execution records failed; they are lost", len(calls))
            self.dropped += len(calls)

    def _write(self, calls: list[Call], used: dict[str, float]) -> None:
        if calls:
            limit = self.output_bytes
            self.store.insert_executions([to_row(c, limit) for c in calls])
            self.written += len(calls)
        if used:
            self.store.touch_api_keys_last_used(used)

    async def close(self) -> None:
        """Stop the task (never cut in the middle of a write), then write the rest."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None
        await self.flush()

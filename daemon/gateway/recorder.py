"""Execution records: every call the gateway answers, written to the store in batches.

The gateway's hot path only appends a `Call` to a bounded buffer; `record` gives it its
store values (`Values`: a plain tuple, times as unix milliseconds that SQLite formats in
the INSERT), about a microsecond on the loop. A background task writes the buffer with
`store.insert_executions` in a thread, every `every_s` or as soon as `batch` records
wait, together with the KeyChecker's last-used times (`take_last_used`). When the store
falls behind and the buffer holds `max_buffer` records or `max_buffer_bytes` of outputs
and results, the oldest records are dropped and counted (`dropped`), so memory stays
bounded whatever the store does. `close()` writes what is left (on shutdown).

Captured stdout/stderr are cut to `output_bytes` characters per stream as they are
recorded (a marker says so); inputs and a result (a step's outputs) are kept only when
their JSON fits in `inputs_bytes` / `outputs_bytes` (the gateway knows the size: it
just encoded it), else a note stands in and the details' "cut" says so. The writing thread runs no
Python per record, only the store's one executemany: a thread that formats rows holds
the GIL, and the loop waits for it (up to the 5 ms switch interval). `Values` holds the
fields of `ExecutionRow` in its order (a test checks it).

Batches of 100: a batch's write is what the 1-connection tail waits behind (the calls
that overlap it), so a shorter write every ~20 ms did better than a 200-row one every
~40 ms: `bench.invoke_ab --connections 1 --rounds 9` against 200, p99 1.39 → 0.95 ms,
the daemon's CPU per call 1.05 x (50 rows: 0.61 x the p99 for 1.11 x the CPU).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import orjson

from daemon.config.daemon_config import Config
from daemon.keys.checker import KeyChecker
from daemon.metrics.calls import UNKNOWN_FUNCTION, observe_call

log = logging.getLogger(__name__)

__all__ = ["Call", "ExecutionRecorder", "RecordStore", "Values", "to_values"]


class RecordStore(Protocol):
    def insert_executions(self, rows: list[Values]) -> int: ...
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
    http_log: dict[str, Any] | None = None  # the call's outbound HTTP, when it sent any
    details: dict[str, Any] | None = None  # inputs, a step's outputs and logs (capped)
    secrets: tuple[str, ...] = ()  # values masked in everything recorded (never stored)
    weight: int = 0  # bytes it holds in the buffer (set by record)
    values: Values | None = None  # what the store writes (set by record)
    script: str = ""  # the script's name, for the metrics (not stored: script_id is)


class Values(NamedTuple):
    """One record as `store.insert_executions` takes it: `ExecutionRow`'s fields in
    its order, the three times as integer unix milliseconds, result and error as
    JSON text."""

    id: str
    script_id: int
    version: int
    function: str
    key_name: str | None
    status: str
    received_at: int
    started_at: int | None
    ended_at: int | None
    queue_ms: float | None
    wall_ms: float | None
    cpu_ms: float | None
    peak_memory_bytes: int | None
    input_bytes: int
    result: str | None
    error: str | None
    logs: str | None
    http_log: str | None
    details: str | None


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n[cut: {len(text) - limit} more characters not kept]"


def _ms(t: float) -> int:
    """Unix seconds as the milliseconds that `iso_from_unix` prints: it rounds the
    fraction to microseconds first (datetime), then drops the last three digits."""
    s = int(t)
    return s * 1000 + round((t - s) * 1e6) // 1000


def to_values(call: Call, limit: int) -> Values:
    """A Call as the store's values: the traceback cut to `limit` characters
    (stdout/stderr are cut by `record`), result and error encoded. Runs on the loop
    once per call: a Values made from a plain tuple (its generated __new__ costs four
    times that), and no masking where the script has no secrets."""
    received = call.received_at
    queue_ms, run_ms = call.queue_ms, call.run_ms
    started = ended = None
    if queue_ms is not None:
        started_s = received + queue_ms / 1000
        started = _ms(started_s)
        if run_ms is not None:
            ended = _ms(started_s + run_ms / 1000)
    error = call.error
    if error is not None and "traceback" in error:
        error = {**error, "traceback": _cut(str(error["traceback"]), limit)}
    logs = call.stdout
    if call.stderr:
        logs += "\n[stderr]\n" + call.stderr
    result, http_log, details = call.result, call.http_log, call.details
    texts = [  # _json inline: most are None (this runs once per call)
        None if result is None else _dumps(result, default=str).decode(),
        None if error is None else _dumps(error, default=str).decode(),
        logs or None,
        None if http_log is None else _dumps(http_log, default=str).decode(),
        None if details is None else _dumps(details, default=str).decode(),
    ]
    if call.secrets:
        mask = _masker(call.secrets)
        if mask is not None:
            texts = [None if t is None else mask(t, i != 2) for i, t in enumerate(texts)]  # 2: logs
    return _VALUES(Values, (
        call.id, call.script_id, call.version, call.function, call.key_name, call.status,
        _ms(received), started, ended, queue_ms, run_ms, call.cpu_ms,
        call.peak_memory_bytes, call.input_bytes, *texts,
    ))  # fmt: skip


_dumps = orjson.dumps  # an orjson.Fragment (JSON encoded already) is written as it is


_VALUES = tuple.__new__


MASK = "********"
_MIN_SECRET = 4  # shorter values would mask ordinary words
Masker = Callable[[str, bool], str]


@functools.lru_cache(maxsize=256)
def _masker(secrets: tuple[str, ...]) -> Masker | None:
    """mask(text, is_json): the text with every secret value replaced by MASK (in
    JSON text, as the value's escaped form), or None when no value is long enough
    to mask. Longest first: a secret holding another is masked whole. Cached: a
    version's secrets are the same tuple on every call."""
    values = sorted((v for v in secrets if len(v) >= _MIN_SECRET), key=len, reverse=True)
    if not values:
        return None
    escaped = [orjson.dumps(v).decode()[1:-1] for v in values]

    def mask(text: str, is_json: bool) -> str:
        for secret in escaped if is_json else values:
            text = text.replace(secret, MASK)
        return text

    return mask


def _observe(call: Call) -> None:
    """Count the call in the metrics; a refused call names no function the caller
    made up (an unknown function is not a label)."""
    function = call.function
    if (
        call.status == "rejected"
        and call.error is not None
        and call.error.get("type") == ("not_found")
    ):
        function = UNKNOWN_FUNCTION
    observe_call(call.script, function, call.status, call.queue_ms, call.run_ms)


class ExecutionRecorder:
    """The buffer and its writer task. `start()` on the loop, `record()` per call,
    `await close()` at shutdown."""

    def __init__(
        self,
        store: RecordStore,
        keys: KeyChecker | None = None,
        *,
        every_s: float = 0.5,
        batch: int = 100,
        max_buffer: int = Config.executions_buffer,
        max_buffer_bytes: int = Config.executions_buffer_bytes,
        output_bytes: int = Config.executions_output_bytes,
        inputs_bytes: int = Config.executions_inputs_bytes,
        outputs_bytes: int = Config.executions_outputs_bytes,
    ) -> None:
        self.store = store
        self.keys = keys
        self.every_s = every_s
        self.batch = batch
        self.output_bytes = output_bytes  # stdout, stderr, a traceback
        self.inputs_bytes = inputs_bytes  # a call's payload, a step's inputs (JSON)
        self.outputs_bytes = outputs_bytes  # a function's result, a step's outputs (JSON)
        self.max_buffer = max_buffer
        self.max_buffer_bytes = max_buffer_bytes
        self._buffer: deque[Call] = deque()
        self._bytes = 0
        self._wake = asyncio.Event()
        self._writing = asyncio.Lock()  # one write at a time (see flush)
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.dropped = 0  # records lost because the buffer was full
        self.written = 0

    def record(self, call: Call) -> None:
        _observe(call)
        limit = self.output_bytes
        if len(call.stdout) > limit:
            call.stdout = _cut(call.stdout, limit)
        if len(call.stderr) > limit:
            call.stderr = _cut(call.stderr, limit)
        values = call.values = to_values(call, limit)
        call.weight = 256 + len(values.logs or "") + len(values.result or "")
        call.weight += len(values.details or "")
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

    def keep_inputs(self, call: Call, value: Any, encoded_bytes: int) -> None:
        """The call's inputs into its details, if their JSON (`encoded_bytes` long)
        fits `inputs_bytes`; else a note, and the details say they were cut."""
        if encoded_bytes > self.inputs_bytes:
            value = self._kept(call, "inputs", value, encoded_bytes, self.inputs_bytes)
        details = call.details
        call.details = {"inputs": value} if details is None else {**details, "inputs": value}

    def keep_result(self, call: Call, value: Any, encoded_bytes: int) -> None:
        """The call's result (a step's outputs) as for keep_inputs, within `outputs_bytes`."""
        if encoded_bytes > self.outputs_bytes:
            value = self._kept(call, "outputs", value, encoded_bytes, self.outputs_bytes)
        call.result = value

    @staticmethod
    def _kept(call: Call, what: str, value: Any, size: int, limit: int) -> Any:
        if size <= limit:
            return value
        details = call.details if call.details is not None else {}
        details.setdefault("cut", {})[what] = {"bytes": size, "limit": limit}
        call.details = details
        return {"not_kept": f"the {what} were {size} bytes of JSON, over the {limit} kept "
                            f"(executions.{what}_bytes)"}  # fmt: skip

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
        """Write every buffered record and the keys' last-used times (in a thread).

        A flush that starts while another one writes waits for it, so when any flush
        returns, every call recorded before it began is in the store: the admin API
        flushes before it reads records, and a record is there as soon as its call was
        answered (not up to `every_s` later)."""
        async with self._writing:
            rows = [c.values for c in self._buffer if c.values is not None]
            self._buffer.clear()
            self._bytes = 0
            used = self.keys.take_last_used() if self.keys is not None else {}
            if not rows and not used:
                return
            try:
                await asyncio.to_thread(self._write, rows, used)
            except Exception:
                log.exception("writing %d execution records failed; they are lost", len(rows))
                self.dropped += len(rows)

    def _write(self, rows: list[Values], used: dict[str, float]) -> None:
        if rows:
            self.store.insert_executions(rows)
            self.written += len(rows)
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

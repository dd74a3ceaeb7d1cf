"""A Python worker serving several calls at once (`--concurrency N`, N > 1).

Frames are read by an asyncio protocol on the worker's own loop; every `call` starts
at once, and its `result` goes back when it ends, in whatever order calls end (the
daemon matches results by id and never sends more than N calls at a time):

- an `async def` function runs as a task on the loop, beside the other calls;
- a sync function runs in a thread pool of N threads (so a call never waits for a
  thread); a value it returns that is awaitable is awaited on the loop.

Every read that brings calls is answered at once with `{"t":"started","ids":[...]}`,
before any of those calls runs: the daemon then knows which calls a worker it has to
kill never read (they are sent to another worker instead of failing). "Sent" means in
the kernel: when the socket is full (the daemon reads slowly) the ack waits in the
transport's buffer, and the frames read meanwhile wait for it to leave (a worker
killed then never ran them, as the daemon will think).

`{"t":"cancel","id":X}` cancels call X: a task gets CancelledError where it awaits and
the result says Cancelled. A thread cannot be stopped from outside in Python, so the
cancel of a sync call is ignored: the call runs on, and the daemon kills the whole
worker when its grace period passes (every call still on the worker then fails).

Output: fds 1 and 2 are shared by every call, so they are not redirected per call
here. `sys.stdout` and `sys.stderr` are replaced by streams that send a call's writes
(print, sys.stdout.write, logging handlers that look up sys.stderr when they write)
to that call's own buffer, found through a context variable: a task and the threads
of its sync call see their own. Writes straight to fd 1/2 (C code, os.write, child
processes, sys.stdout.buffer) and through a stream object taken before the call go to
the replica's log.

cpu_ms: a sync call's thread CPU time; an async call's is the worker's CPU time while
it ran, which includes the other calls running at the same time.
Standard library only.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_OUTPUT: contextvars.ContextVar[Any] = contextvars.ContextVar("scriptd_call_output", default=None)
CANCELLED = "the call was cancelled: it passed the script's execution timeout"


class CallOutput:
    """One call's stdout and stderr, each kept up to `limit` bytes of UTF-8."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.parts: tuple[list[str], list[str]] = ([], [])
        self.kept = [0, 0]
        self.dropped = [0, 0]

    def write(self, index: int, text: str) -> int:
        size = len(text.encode("utf-8", "replace"))
        room = self.limit - self.kept[index]
        if size <= room:
            self.parts[index].append(text)
            self.kept[index] += size
        else:
            cut = text.encode("utf-8", "replace")[: max(0, room)]
            self.parts[index].append(cut.decode("utf-8", "ignore"))
            self.kept[index] += len(cut)
            self.dropped[index] += size - len(cut)
        return len(text)

    def texts(self, marker: str) -> dict[str, Any]:
        out = []
        for index in (0, 1):
            text = "".join(self.parts[index])
            if self.dropped[index]:
                text += marker.format(dropped=self.dropped[index])
            out.append(text)
        return {"stdout": out[0], "stderr": out[1], "truncated": any(self.dropped)}


class RoutedStream:
    """sys.stdout / sys.stderr: a call's writes to its CallOutput, others to the real one."""

    def __init__(self, real: Any, index: int) -> None:
        self._real = real
        self._index = index

    def write(self, text: str) -> int:
        output = _OUTPUT.get()
        if output is None:
            return int(self._real.write(text))
        return output.write(self._index, str(text))

    def flush(self) -> None:
        if _OUTPUT.get() is None:
            self._real.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class Server(asyncio.Protocol):
    """The worker socket: calls in, results out (written once per loop iteration)."""

    def __init__(self, worker: Any, concurrency: int, harness: Any) -> None:
        self.worker = worker
        self.harness = harness
        self.protocol = harness.protocol
        self.loop = asyncio.get_running_loop()
        self.decoder = self.protocol.FrameDecoder(worker.max_frame)
        self.pool = ThreadPoolExecutor(concurrency, thread_name_prefix="scriptd-call")
        self.tasks: dict[Any, tuple[asyncio.Task[None], bool]] = {}  # id -> (task, threaded)
        self.out: list[bytes] = []
        self.transport: Any = None
        self.unsent = False  # bytes wait in the transport's buffer (the socket is full)
        self.held: list[dict[str, Any]] = []  # frames read meanwhile: run once they left
        self.done: asyncio.Future[int] = self.loop.create_future()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        # pause_writing as soon as a byte waits in the buffer, resume_writing once it is
        # empty: whether an ack is in the kernel yet (see data_received).
        transport.set_write_buffer_limits(high=0)

    def pause_writing(self) -> None:
        self.unsent = True

    def resume_writing(self) -> None:
        self.unsent = False
        held, self.held = self.held, []
        for frame in held:
            self.handle(frame)

    def connection_lost(self, exc: BaseException | None) -> None:
        if not self.done.done():
            self.done.set_result(0)

    def data_received(self, data: bytes) -> None:
        try:
            frames = self.decoder.feed(data)
        except self.protocol.ProtocolError as exc:
            sys.__stderr__.write(f"scriptd worker: {exc}\n")
            self.done.set_result(2)
            return
        ids = [frame.get("id") for frame in frames if frame["t"] == "call"]
        if ids:  # written now, before any of them runs: see `started` in protocol.py
            self.transport.write(self.protocol.encode({"t": "started", "ids": ids}))
        if self.held or (ids and self.unsent):  # that ack is not in the kernel yet
            self.held.extend(frames)
            return
        for frame in frames:
            self.handle(frame)

    def handle(self, frame: dict[str, Any]) -> None:
        kind = frame["t"]
        if kind == "call":
            threaded = not self.harness.is_async(self.worker.functions.get(frame.get("function")))
            task = self.loop.create_task(self.call(frame, threaded))
            self.tasks[frame.get("id")] = (task, threaded)
        elif kind == "cancel":
            task, threaded = self.tasks.get(frame.get("id"), (None, True))
            if task is not None and not threaded:  # a thread cannot be stopped
                task.cancel()
        elif kind == "ping":
            self.send(
                self.protocol.encode({"t": "pong", "id": frame.get("id"), "pid": os.getpid()})
            )
        elif kind == "run":
            self.send(self.worker.run(frame))  # a functions worker: WrongKind
        else:
            sys.__stderr__.write(f"scriptd worker: unknown frame {kind!r}\n")

    async def call(self, frame: dict[str, Any], threaded: bool) -> None:
        name, result = frame.get("function"), {"t": "result", "id": frame.get("id")}
        output = CallOutput(self.worker.capture.limit)
        _OUTPUT.set(output)  # this task's own context (and the thread's, copied from it)
        wall0, cpu0 = time.perf_counter(), time.process_time()
        cpu = None
        try:
            fn, payload = self.worker.resolve(name, frame.get("payload"))
            if threaded:
                run = contextvars.copy_context().run
                value, cpu = await self.loop.run_in_executor(self.pool, run, _timed, fn, payload)
            else:
                value = fn(**payload)
            if hasattr(value, "__await__"):
                value = await value
            result.update(ok=True, value=value)
        except asyncio.CancelledError:
            result.update(ok=False, error=self.harness.harness_error("Cancelled", CANCELLED))
        except BaseException as exc:  # the user's SystemExit is an error too
            result["ok"] = False
            result["error"] = self.harness.call_error(exc)
        finally:
            self.tasks.pop(frame.get("id"), None)
        if cpu is None:
            cpu = time.process_time() - cpu0
        result.update(output.texts(self.protocol.TRUNCATION_MARKER))
        result.update(cpu_ms=round(cpu * 1000, 3),
                      wall_ms=round((time.perf_counter() - wall0) * 1000, 3))  # fmt: skip
        self.send(self.worker._encode(result, name))

    def send(self, frame: bytes) -> None:
        """Queue a frame; the queue is written once, at the end of this loop iteration."""
        if not self.out:
            self.loop.call_soon(self.flush)
        self.out.append(frame)

    def flush(self) -> None:
        data, self.out = b"".join(self.out), []
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)


def _timed(fn: Any, payload: dict[str, Any]) -> tuple[Any, float]:
    """In a pool thread: the call and the thread's CPU time it took."""
    cpu0 = time.thread_time()
    value = fn(**payload)
    return value, time.thread_time() - cpu0


def serve(worker: Any, concurrency: int, harness: Any) -> int:
    """Serve until the daemon closes the socket (0) or sends a bad frame (2)."""
    sys.stdout = RoutedStream(sys.stdout, 0)
    sys.stderr = RoutedStream(sys.stderr, 1)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    worker.sock.setblocking(False)

    async def run() -> int:
        server = Server(worker, concurrency, harness)
        await loop.create_unix_connection(lambda: server, sock=worker.sock)
        code = await server.done
        server.pool.shutdown(wait=False)
        return code

    return loop.run_until_complete(run())

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
killed then never ran them, as the daemon will think). Results are written together
at the end of a loop iteration, or at once when the last call in flight ends.

The fixed cost of a call is kept low (it is most of what a quick call costs the
worker): one CPU clock reading per call where calls run back to back (CpuClock), reads
into one buffer (no allocation per read), the function's kind looked up once. Each
call is still its own asyncio task: user code may call asyncio.current_task() (as
asyncio.timeout and TaskGroup do) before its first await.

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
READ_BYTES = 256 * 1024  # per read of the socket, as asyncio reads (a bigger frame takes several)
NOTHING_PRINTED: dict[str, Any] = {"stdout": "", "stderr": "", "truncated": False}


class CallOutput:
    """One call's stdout and stderr, each kept up to `limit` bytes of UTF-8."""

    __slots__ = ("dropped", "kept", "limit", "parts")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.parts: tuple[list[str], list[str]] | None = None  # made by the first write

    def write(self, index: int, text: str) -> int:
        if self.parts is None:
            self.parts, self.kept, self.dropped = ([], []), [0, 0], [0, 0]
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
        if self.parts is None:
            return NOTHING_PRINTED
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


class Server(asyncio.BufferedProtocol):
    """The worker socket: calls in, results out (written once per loop iteration).

    Read into one buffer of its own (a BufferedProtocol): a plain Protocol gets a new
    bytes object per read, of 256 KiB before it is cut to size, which costs an mmap, an
    mremap and a munmap per read."""

    def __init__(self, worker: Any, concurrency: int, harness: Any) -> None:
        self.worker = worker
        self.harness = harness
        self.protocol = harness.protocol
        self.loop = asyncio.get_running_loop()
        self.decoder = self.protocol.FrameDecoder(worker.max_frame)
        self.pool = ThreadPoolExecutor(concurrency, thread_name_prefix="scriptd-call")
        self.tasks: dict[Any, tuple[asyncio.Task[None], bool]] = {}  # id -> (task, threaded)
        self.threaded: dict[str, bool] = {}  # function name -> sync (runs in a thread)
        self.marker = self.protocol.TRUNCATION_MARKER
        self.limit = worker.capture.limit
        self.clock = CpuClock()
        self.out: list[bytes] = []
        self.buffer = memoryview(bytearray(READ_BYTES))
        self.transport: Any = None
        self.unsent = False  # bytes wait in the transport's buffer (the socket is full)
        self.held: list[dict[str, Any]] = []  # frames read meanwhile: run once they left
        self.done: asyncio.Future[int] = self.loop.create_future()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        # pause_writing as soon as a byte waits in the buffer, resume_writing once it is
        # empty: whether an ack is in the kernel yet (see buffer_updated).
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

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.buffer

    def buffer_updated(self, nbytes: int) -> None:
        try:
            frames = self.decoder.feed(self.buffer[:nbytes])
        except self.protocol.ProtocolError as exc:
            sys.__stderr__.write(f"scriptd worker: {exc}\n")
            self.done.set_result(2)
            return
        ids = [frame.get("id") for frame in frames if frame["t"] == "call"]
        if ids:  # written now, before any of them runs: see `started` in protocol.py
            text = '{"t":"started","ids":' + self.protocol.dumps(ids) + "}"
            self.transport.write(self.protocol.encode_text(text))
        if self.held or (ids and self.unsent):  # that ack is not in the kernel yet
            self.held.extend(frames)
            return
        for frame in frames:
            self.handle(frame)

    def handle(self, frame: dict[str, Any]) -> None:
        kind = frame["t"]
        if kind == "call":
            threaded = self.is_threaded(frame.get("function"))
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

    def is_threaded(self, name: Any) -> bool:
        """A sync function (or a name main.py does not have: resolve() says so) runs
        in a thread; looked up once per function."""
        if type(name) is not str:
            return True
        threaded = self.threaded.get(name)
        if threaded is None:
            threaded = not self.harness.is_async(self.worker.functions.get(name))
            self.threaded[name] = threaded
        return threaded

    async def call(self, frame: dict[str, Any], threaded: bool) -> None:
        name, call_id = frame.get("function"), frame.get("id")
        output = CallOutput(self.limit)
        _OUTPUT.set(output)  # this task's own context (and the thread's, copied from it)
        wall0, cpu0 = time.perf_counter(), self.clock.start()
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
            result = {"t": "result", "id": call_id, "ok": True, "value": value}
        except asyncio.CancelledError:
            error = self.harness.harness_error("Cancelled", CANCELLED)
            result = {"t": "result", "id": call_id, "ok": False, "error": error}
        except BaseException as exc:  # the user's SystemExit is an error too
            error = self.harness.call_error(exc)
            result = {"t": "result", "id": call_id, "ok": False, "error": error}
        finally:
            self.tasks.pop(call_id, None)
        cpu1 = self.clock.end()
        if cpu is None:
            cpu = cpu1 - cpu0
        result.update(output.texts(self.marker))
        result["cpu_ms"] = round(cpu * 1000, 3)
        result["wall_ms"] = round((time.perf_counter() - wall0) * 1000, 3)
        self.send(self.worker._encode(result, name))

    def send(self, frame: bytes) -> None:
        """Queue a frame; the queue is written once, at the end of this loop iteration,
        or at once when no call is left in flight (no other result can join it then)."""
        out = self.out
        out.append(frame)
        if not self.tasks:
            self.flush()
        elif len(out) == 1:
            self.loop.call_soon(self.flush)

    def flush(self) -> None:
        if not self.out:
            return  # written already (the last call in flight ended)
        data, self.out = b"".join(self.out), []
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)


class CpuClock:
    """The worker's CPU time (process_time) at the start and end of each async call.

    Why shared readings: process_time is a system call (no vDSO clock for CPU time),
    about 2 µs, and two per call were the largest single cost of a call that does
    nothing. The calls a read brings start one after the other in one loop
    iteration, so a call that starts within REUSE_S of the previous call's end takes
    that reading as its own start: what ran in between (at most REUSE_S of CPU, the
    loop passing from one task to the next) counts in its cpu_ms."""

    REUSE_S = 50e-6

    __slots__ = ("cpu", "wall")

    def __init__(self) -> None:
        self.cpu = 0.0
        self.wall = -1.0  # perf_counter of the last end reading

    def start(self) -> float:
        if time.perf_counter() - self.wall <= self.REUSE_S:
            self.wall = -1.0  # one start per end reading: the next call reads anew
            return self.cpu
        return time.process_time()

    def end(self) -> float:
        self.cpu, self.wall = time.process_time(), time.perf_counter()
        return self.cpu


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

"""One replica: a supervisor process tree and the daemon's view of its workers.

A replica is started by a `Launcher` (daemon/serving/launcher.py: a sandbox for real, a plain
process for development), which gets one end of a socketpair as the supervisor's control
socket (fd 3). The replica then waits for "hello" and for its K "worker" frames (each
carrying that worker's socket); a "load_error" or an exit before that raises
ReplicaStartError (daemon/serving/replica_start.py) with the reason (and the traceback
of the script's import).

Once ready, every worker that is free is handed to the replica's `Listener` (the pool),
which passes it on to the dispatcher. The call state machine lives in the dispatcher;
a `Worker` carries its `PendingCall`s (up to the script's concurrency) and resolves each
one's future with its result frame or, when the worker dies under it, with a
`WorkerLoss` saying how it died. The listener hears of a worker once per free slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
import time
from typing import Any, Protocol

from daemon.metrics.instruments import WORKER_RESTARTS
from daemon.serving import wire
from daemon.serving.pending_call import WorkerLoss
from daemon.serving.process import ExitInfo, Launcher, Process, UsageInfo
from daemon.serving.replica_output import OutputPump
from daemon.serving.replica_start import Launched, ReplicaStartError, launch_in_thread
from daemon.serving.worker import Worker

log = logging.getLogger(__name__)

__all__ = [
    "Listener",
    "Replica",
    "ReplicaStartError",
]

CONTROL_EOF_GRACE_S = 1.0  # a supervisor that closed its control socket must exit by then
# How long a start or a respawn keeps worker moves quick (Process.expect_moves): later,
# a move's RCU grace period (~10 ms) is a small part of the wait.
MOVE_WARMTH_S = 2.0


class Listener(Protocol):
    def worker_ready(self, worker: Worker) -> None:
        """A worker of a ready, non-draining replica is free (new, or done with a call)."""

    def replica_exited(self, replica: Replica) -> None:
        """The replica's process tree is gone and cleaned up."""


STARTING, READY, DRAINING, STOPPED = "starting", "ready", "draining", "stopped"


class Replica:
    """One running copy of a version. Create, `await start()`, then serve; `stop()`."""

    def __init__(
        self, name: str, launcher: Launcher, listener: Listener, script: str | None = None
    ) -> None:
        self.name = name
        self.script = script or name  # the metrics' label
        self.launcher = launcher
        self.listener = listener
        self.state = STARTING
        self.hello: dict[str, Any] | None = None
        self.workers: dict[int, Worker] = {}
        self.busy = 0  # calls in flight on its workers
        self.process: Process | None = None
        self.exit: ExitInfo | None = None
        self.started_at = time.monotonic()
        self.ready_at: float | None = None
        self.kills_sent: dict[int, float] = {}  # worker number -> monotonic time of kill_worker
        self.ping_sent: float | None = None  # monotonic time of the ping not answered yet
        self._pings = 0
        self._control: wire.ControlChannel | None = None
        self._ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._gone = asyncio.Event()
        self._idle = asyncio.Event()
        self._oom_seen = 0
        self._exit_task: asyncio.Task[None] | None = None
        self._connecting: set[asyncio.Future[Any]] = set()
        self._output: OutputPump | None = None  # stdout and stderr of the whole tree

    def __repr__(self) -> str:
        return f"<Replica {self.name} {self.state}>"

    @property
    def accepting(self) -> bool:
        return self.state == READY

    @property
    def gone(self) -> bool:
        return self._gone.is_set()

    # --- start --------------------------------------------------------------
    async def start(self, timeout: float, launched: Launched | None = None) -> None:
        """Launch (or take a tree launched already: a released spare, serving/spare.py)
        and wait for hello and K workers. Raises ReplicaStartError."""
        ours, self._output, self.process = launched or await self._launch()
        self._output.start()
        self.process.expect_moves(self.launcher.workers, MOVE_WARMTH_S)
        self._control = wire.ControlChannel(ours, self._on_control, self._on_control_closed)
        self._exit_task = asyncio.get_running_loop().create_task(self._watch_exit())
        try:
            await asyncio.wait_for(asyncio.shield(self._ready), timeout)
        except TimeoutError:
            self.kill()
            raise ReplicaStartError(
                f"a replica of {self.launcher.label} did not become ready within {timeout:g} s"
            ) from None
        except BaseException:
            self.kill()
            raise
        self.state = READY
        self.ready_at = time.monotonic()
        self._oom_seen = self._oom_kills()
        workers = list(self.workers.values())
        for _ in range(self.launcher.concurrency):  # a turn of every worker per slot
            for worker in workers:
                self.worker_free(worker)

    async def _launch(self) -> Launched:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._output = self.launcher.output(self.name)
            process = await launch_in_thread(
                self.launcher, self.name, theirs.fileno(), self._output.write_fd
            )
        except BaseException as exc:  # cancelled too: nothing of this replica is left
            ours.close()
            if self._output is not None:
                self._output.close()
            self.state = STOPPED
            self._gone.set()
            if not isinstance(exc, Exception):
                raise
            reason = f"cannot start a replica of {self.launcher.label}: {exc}"
            raise ReplicaStartError(reason) from exc
        finally:
            theirs.close()
            if self._output is not None:
                self._output.release_write_end()
        return Launched(ours, self._output, process)

    def _fail_start(self, exc: ReplicaStartError) -> None:
        if not self._ready.done():
            self._ready.set_exception(exc)
            self._ready.exception()  # retrieved: a start nobody awaits must not warn

    # --- control frames -----------------------------------------------------
    def _on_control(self, frame: dict[str, Any]) -> None:
        kind = frame.get("t")
        if kind == "worker":
            self._adopt(frame)
        elif kind == "worker_exit":
            self._worker_exit(frame)
        elif kind == "pong":
            if frame.get("id") == self._pings:
                self.ping_sent = None
        elif kind == "hello":
            self.hello = frame
            self._check_ready()
        elif kind == "load_error":
            err = frame.get("error") or {}
            reason = f"{err.get('type', 'Error')}: {err.get('message', '')}".rstrip(": ")
            self._fail_start(ReplicaStartError(f"the main file failed to load: {reason}", err))
        elif kind == "error":
            log.warning("%s: supervisor refused a frame: %s", self, frame.get("message"))

    def _adopt(self, frame: dict[str, Any]) -> None:
        assert self._control is not None
        fd = self._control.take_fd()
        if fd is None:
            log.error("%s: worker frame without a socket", self)
            return
        sock = socket.socket(fileno=fd)
        lane = frame.get("lane")
        worker = Worker(self, int(frame["worker"]), int(frame.get("slot", 0)), int(frame["pid"]),
                        lane if isinstance(lane, int) else None,
                        self.launcher.concurrency)  # fmt: skip
        task = asyncio.get_running_loop().create_task(self._connect(worker, sock))
        self._connecting.add(task)  # held: the loop keeps only weak references to tasks
        task.add_done_callback(self._connecting.discard)

    async def _connect(self, worker: Worker, sock: socket.socket) -> None:
        if self.state == STOPPED:
            sock.close()
            return
        # A memory cgroup of its slot: the move takes the kernel's global cgroup lock, an
        # RCU grace period (ms) unless the lock is warm (Process.expect_moves). Warm, it is
        # made here: a thread's two hand-offs cost more than the move (0.7 ms of a new
        # replica's first answer on a quiet host, ms under load). Cold, it runs in a thread;
        # a respawned worker then serves before it ends.
        moving = None
        if self.process is not None and self.process.move_is_quick():
            worker.measure_with(self.process.track_memory(f"slot{worker.slot}", worker.pid))
        elif self.process is not None:
            track = self.process.track_memory
            moving = asyncio.ensure_future(
                asyncio.to_thread(track, f"slot{worker.slot}", worker.pid)
            )
        worker.channel = await wire.open_worker_channel(sock, worker.on_frame, worker.on_close)
        if moving is not None and self.state == STARTING:
            worker.measure_with(await moving)
        elif moving is not None:
            self._connecting.add(moving)  # held until moved: the loop keeps weak references
            moving.add_done_callback(functools.partial(self._moved, worker))
        if not worker.alive:  # closed while connecting
            return
        self.workers[worker.number] = worker
        if self.state == STARTING:
            self._check_ready()
        else:
            for _ in range(worker.capacity):  # each of its free slots
                self.worker_free(worker)

    def _moved(self, worker: Worker, moving: asyncio.Future[Any]) -> None:
        self._connecting.discard(moving)
        if not moving.cancelled() and moving.exception() is None:
            worker.measure_with(moving.result())

    def _check_ready(self) -> None:
        alive = sum(1 for w in self.workers.values() if w.alive)
        enough = self.hello is not None and alive >= self.launcher.workers
        if enough and not self._ready.done():
            self._ready.set_result(None)

    def _worker_exit(self, frame: dict[str, Any]) -> None:
        number = int(frame.get("worker", -1))
        self.kills_sent.pop(number, None)
        worker = self.workers.pop(number, None)
        loss = self.loss(frame)  # read the OOM counter once per death
        # the call it died in: still on it, or ended when its socket closed first
        call_id = None
        if worker is not None:
            call_id = worker.call.id if worker.call is not None else worker.lost_call_id
            worker.exited(loss)
        killed = frame.get("killed") is not False
        if self.state == READY:  # the supervisor starts it again
            cause = "oom" if loss.oom else "killed" if killed else "crashed"
            WORKER_RESTARTS.labels(self.script, cause).inc()
        if not killed:
            oom = " (out of memory)" if loss.oom else ""
            extra = {"execution_id": call_id} if call_id is not None else None
            log.warning("%s: worker %d %s%s", self, number, loss.describe(), oom, extra=extra)

    def _on_control_closed(self, exc: BaseException | None) -> None:
        if exc is not None:
            log.warning("%s: control socket closed: %s", self, exc)
        # A supervisor that closed its control socket is exiting: let it, so its own exit
        # status is the reason we report, but make sure of it soon after.
        if self.exit is None and self.state != STOPPED:
            asyncio.get_running_loop().call_later(CONTROL_EOF_GRACE_S, self._kill_if_alive)

    def _kill_if_alive(self) -> None:
        if self.exit is None:
            self.kill()

    # --- the WorkerOwner protocol: what workers report ------------------------
    def call_started(self, worker: Worker) -> None:
        self.busy += 1

    def call_ended(self, worker: Worker) -> None:
        self.busy -= 1

    def worker_free(self, worker: Worker) -> None:
        if self.state == READY:
            self.listener.worker_ready(worker)
        elif self.state == DRAINING and self.busy == 0:
            self._idle.set()

    def worker_closed(self, worker: Worker) -> None:
        # Kept in self.workers until its worker_exit frame names the cause.
        if self.busy == 0 and self.state == DRAINING:
            self._idle.set()

    def kill_worker(self, worker: Worker) -> None:
        if worker.number not in self.workers:  # its worker_exit came already
            return
        self.kills_sent[worker.number] = time.monotonic()  # the pool murders if ignored
        if self.process is not None:  # its replacement is moved into the slot's cgroup
            self.process.expect_moves(1, MOVE_WARMTH_S)
        if self._control is not None and not self._control.closed:
            self._control.send({"t": "kill_worker", "worker": worker.number})

    def ping(self) -> None:
        """Ask the supervisor for a pong; one that never answers is murdered by the pool."""
        if self.ping_sent is not None or self._control is None or self._control.closed:
            return
        self._pings += 1
        self.ping_sent = time.monotonic()
        self._control.send({"t": "ping", "id": self._pings})

    def loss(self, frame: dict[str, Any] | None) -> WorkerLoss:
        """How a worker died: from its worker_exit frame, the OOM counter, the exit."""
        oom = self._oom_kills() > self._oom_seen
        self._oom_seen = max(self._oom_seen, self._oom_kills())
        detail = ""
        if frame is None and self.exit is not None:
            detail = f"the replica exited ({self.exit.reason})"
        code = frame.get("code") if frame else None
        sig = frame.get("signal") if frame else None
        heap = frame.get("heap_limit") if frame and frame.get("oom") == "heap" else None
        heap_limit = heap if isinstance(heap, int) else None
        memory = self.launcher.memory_bytes
        return WorkerLoss(code, sig, oom or heap_limit is not None, memory, detail, heap_limit)

    def _oom_kills(self) -> int:
        if self.process is None:
            return 0
        try:
            return self.process.usage().oom_kills
        except OSError:
            return 0

    # --- usage, stop, kill --------------------------------------------------
    def usage(self) -> UsageInfo | None:
        """Resource usage of the whole tree (for the autoscaler and metering)."""
        if self.process is None or self.gone:
            return None
        try:
            return self.process.usage()
        except OSError:
            return None

    def refuse_calls(self) -> None:
        """Hand out no more workers; calls already running go on."""
        if self.state == READY:
            self.state = DRAINING

    async def stop(self, drain_timeout: float, grace: float = 6.0) -> None:
        """Drain: take no new calls, let running ones finish (up to drain_timeout), then
        ask the supervisor to shut down; kill the tree if it has not exited after grace."""
        if self.state in (STARTING, READY):
            self.state = DRAINING
        if self.busy and not self.gone:
            self._idle.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), drain_timeout)
        if self._control is not None and not self._control.closed:
            self._control.send({"t": "shutdown"})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._gone.wait(), grace)
        if not self.gone:
            self.kill()
            await self._gone.wait()

    def kill(self) -> None:
        """SIGKILL the whole tree now; `_watch_exit` reaps it."""
        if self.state != STOPPED:
            self.state = DRAINING if self.state == READY else self.state
        if self.process is not None and self.exit is None:
            self.process.kill()
        elif self.process is None:
            self._gone.set()

    async def wait_gone(self) -> None:
        await self._gone.wait()

    async def _watch_exit(self) -> None:
        assert self.process is not None
        try:
            self.exit = await self.process.wait()
        finally:
            was_starting = self.state == STARTING
            self.state = STOPPED
            if self._control is not None:
                self._control.close()
            for worker in list(self.workers.values()):
                worker.exited(None)
            reason = self.exit.reason if self.exit else "unknown"
            self._fail_start(ReplicaStartError(f"the replica exited before it was ready: {reason}"))
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.process.cleanup)
            if self._output is not None:
                self._output.finish()
            self._gone.set()
            self._idle.set()
            if not was_starting:
                self.listener.replica_exited(self)

"""The supervisor's pool of workers, run with gunicorn's verbs.

runtimes/supervisor.py (the program, pid 1 of the sandbox) has startup.py parse the
command line and hand over to `Supervisor.run` here; the protocol.py docstring has
every option and every message.

python: main is imported here once (load error -> `load_error`, exit 3), then
hello, then K workers are forked from this loaded process (a respawn costs a
fork, not an import). When the import left threads running, fork would copy
locks held by threads that do not exist in the child, so workers are spawned
as fresh interpreters instead (mode "spawn"), each importing main itself.
(Only Python threads are counted: native pools such as OpenBLAS's register
fork handlers; `--mode spawn` is there for libraries that do not.)
javascript: this runs on the host python3 and spawns `node harness.mjs` per
worker; the first worker to load main tells us the functions for hello.

A spawned worker gets its socket as fd 3 and a status pipe as fd 4 on which
it writes one JSON line, ready or load_error, once main is loaded; it is
announced to the daemon only when ready. Spawned workers are slow to boot
(20-100 ms), so one spare is kept booted ahead and takes the next free slot.

The pool is run with gunicorn's verbs: spawn_worker, kill_worker,
reap_workers, manage_workers. Signal handlers only queue the signal; the main
loop acts on it. As pid 1 we reap every child, orphans included (outside a
pid namespace we ask to be a child subreaper to keep the same behaviour).

Start-up cost matters (every replica pays it before its first call): only C modules
are imported (_signal, _socket; poller.py uses select), not signal, socket or selectors,
whose enums cost milliseconds. Stdlib only, Python 3.8+; loaded by path by startup.py.
"""

from __future__ import annotations

import _signal
import _socket
import _thread
import os
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    from collections.abc import Callable
    from typing import Any

GRACE_S = 5.0
QUICK_DEATH_S = 1.0
MAX_BOOT_FAILURES = 5
SIGKILL, SIGABRT = 9, 6
HANDLED_SIGNALS = (_signal.SIGCHLD, _signal.SIGTERM, _signal.SIGINT, _signal.SIGHUP)


class Supervisor:
    def __init__(self, args: Any, control: socket.socket, load: Callable[..., Any]) -> None:
        self.args = args
        self.load = load  # (path, module name) -> module, from cached bytecode
        self.protocol = load(os.path.join(args.harness_dir, "protocol.py"), "_scriptd_protocol")
        self.launch = load(os.path.join(args.harness_dir, "launch.py"), "_scriptd_launch")
        self.control = control
        self.decoder = self.protocol.FrameDecoder(args.max_frame)
        poller = load(os.path.join(args.harness_dir, "poller.py"), "_scriptd_poller")
        self.selector = poller.Poller()
        self.signals: list[int] = []
        self.procs: dict[int, Any] = {}  # by pid
        self.next_worker = 1
        self.slot_free_at: dict[int, float] = {}  # slot -> monotonic time to respawn
        self.quick_deaths = dict.fromkeys(range(args.workers), 0)
        self.boot_failures = 0
        self.hello_sent = False
        self.spares = 0
        self.mode = "spawn"
        self.functions: Any = {}
        self.step: Any = None  # a compiled code step (python, --kind step)
        self.harness: Any = None
        self.terminate_by: float | None = None
        self.relay_pid: int | None = None  # the egress relay's process, if any
        self.relay: Any = None  # egress_relay.py, loaded when the replica has egress
        self.lanes = 0  # worker lanes of the relay: a proxy port per live worker

    # --- start -----------------------------------------------------------
    def run(self) -> int:
        self._start_relay()  # first: the relay must inherit no handler of ours
        self._wakeup_write = self.selector.catch_signals(HANDLED_SIGNALS, self.signals)
        self.selector.register(self.control.fileno(), "control")
        if self.args.language == "python":
            self._boot_python()
        self.slot_free_at = dict.fromkeys(range(self.args.workers), 0.0)
        # A fork is already fast; a spawned worker is booted ahead as a spare.
        default_spares = 0 if self.mode == "fork" else 1
        self.spares = default_spares if self.args.spares is None else self.args.spares
        while True:
            self.manage_workers()
            if self.terminate_by is not None and not self.procs:
                self._stop_relay()
                return 0
            for _fd, data in self.selector.select(self._timeout()):
                if data == "control":
                    self._read_control()
                else:
                    self._read_status(data)
            self._handle_signals()

    def _boot_python(self) -> None:
        self.harness = self.load(
            os.path.join(self.args.harness_dir, "python", "harness.py"), "_scriptd_harness"
        )
        t0 = time.perf_counter()
        try:
            if self.args.kind == "step":  # compiled here once, run by every forked worker
                self.step = self.harness.load_step(
                    self.args.source, self.args.main, self.args.step_spec
                )
            else:
                module = self.harness.load_project(self.args.source, self.args.main)
                self.functions = self.harness.list_functions(module)
                self.harness.warm_up(self.functions, self.args.concurrency)
        except BaseException as exc:
            self.load_failed(self.harness.error_info(exc), _ms_since(t0))
        load_ms = _ms_since(t0)
        threaded = _thread._count() > 0  # Python threads besides this one
        self.mode = (
            self.args.mode if self.args.mode != "auto" else ("spawn" if threaded else "fork")
        )
        spec = self.step.spec.describe() if self.step is not None else None
        self.send_hello(list(self.functions), load_ms, self.harness.runtime_version(), spec)

    def send_hello(
        self, functions: list[str], load_ms: float, version: str, step: Any = None
    ) -> None:
        """step: the declared {"inputs", "outputs"} of a code step."""
        a = self.args
        self.send({"t": "hello", "language": a.language, "version": version,
                   "runtime": f"{self._runtime_name()} {version}", "functions": functions,
                   "load_ms": load_ms, "pid": os.getpid(), "workers": a.workers,
                   "mode": self.mode, "kind": a.kind, **(step or {})})  # fmt: skip
        self.hello_sent = True

    def load_failed(self, error: dict[str, str], load_ms: float | None = None) -> None:
        message = {"t": "load_error", "language": self.args.language,
                   "runtime": self._runtime_name(), "load_ms": load_ms, "error": error}  # fmt: skip
        try:  # noqa: SIM105 (contextlib costs ms to import)
            self.protocol.send(self.control, self.protocol.encode(message))
        except OSError:
            pass
        self.halt(self.protocol.LOAD_ERROR_EXIT)

    def _runtime_name(self) -> str:
        return "python" if self.args.language == "python" else "node"

    # --- the pool's verbs -------------------------------------------------
    def manage_workers(self) -> None:
        """Fill every empty slot whose backoff has passed."""
        if self.terminate_by is not None:
            if time.monotonic() >= self.terminate_by:
                for proc in list(self.procs.values()):
                    self.kill_worker(proc, SIGKILL)
            return
        busy = self._held_slots()
        now = time.monotonic()
        for slot, free_at in self.slot_free_at.items():
            if slot not in busy and now >= free_at:
                spare = self._spare()
                if spare is None:
                    self.spawn_worker(slot)
                    continue
                spare.slot = slot  # announced now if booted, else as soon as it is
                if spare.ready:
                    self.announce(spare, spare.daemon_end)
        spares = [p for p in self.procs.values() if p.slot is None]
        booting = any(p.status_fd is not None for p in self.procs.values())
        if len(spares) < self.spares and not booting:  # never slow a slot's boot
            self.spawn_worker(None)

    def _held_slots(self) -> set[int | None]:
        """Slots with a worker that is not being killed. A killed worker's slot is filled
        at once, not after its death is reaped: it never runs again (SIGKILL), and its
        exit can wait for a CPU for tens of ms on a loaded host."""
        return {p.slot for p in self.procs.values() if not p.killed}

    def _spare(self) -> Any:
        """A spare to fill a slot with: a booted one, else one still booting
        (it is ahead of a process we would start now)."""
        spares = [p for p in self.procs.values() if p.slot is None and not p.killed]
        spares.sort(key=lambda p: (not p.ready, p.started))
        return spares[0] if spares else None

    def spawn_worker(self, slot: int | None) -> None:
        """A worker for `slot`, or a spare (slot None) when spawned ones are slow to boot."""
        daemon_end, worker_end = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM)
        lane = self._free_lane()
        if self.mode == "fork":
            serve = lambda: self._serve_forked(worker_end, daemon_end, lane)  # noqa: E731
            pid, release = self.launch.fork_held(serve, HANDLED_SIGNALS)
            try:  # its frame first, then the worker runs (launch.fork_held)
                proc = self._track(slot, pid, lane)
                proc.ready = True
                self.announce(proc, daemon_end)
            finally:
                os.close(release)
        else:
            env = {**os.environ, **self._lane_env(lane)}
            pid, status_fd = self.launch.spawn_process(
                self.launch.worker_argv(self.args), worker_end, env
            )
            proc = self._track(slot, pid, lane)
            proc.daemon_end = daemon_end
            proc.status_fd = status_fd
            self.selector.register(status_fd, proc)
        worker_end.close()

    def _serve_forked(
        self, worker_end: socket.socket, daemon_end: socket.socket, lane: int | None
    ) -> int:
        """In a forked child: drop what belongs to the supervisor, then serve."""
        os.environ.update(self._lane_env(lane))
        daemon_end.close()
        for fd in self.selector.fds():
            if fd != self.control.fileno():
                os.close(fd)
        os.close(self._wakeup_write)
        self.control.close()
        worker = self.harness.Worker(
            worker_end, self.functions, self.args.max_output, self.args.max_frame, self.step
        )
        if self.args.concurrency > 1 and self.step is None:
            return self.harness.serve_concurrently(worker, self.args.concurrency)
        return worker.serve()

    def _free_lane(self) -> int | None:
        """The lowest lane no live worker holds (None: none free, see launch.free_lane)."""
        return self.launch.free_lane(self.procs.values(), self.lanes)

    def _lane_env(self, lane: int | None) -> dict[str, str]:
        """The proxy variables of a worker on `lane` (nothing to change without one)."""
        if lane is None or self.relay is None:
            return {}
        return self.relay.proxy_env(self.relay.lane_port(self.args.egress_port, lane))

    def _track(self, slot: int | None, pid: int, lane: int | None = None) -> Any:
        proc = self.launch.Proc(self.next_worker, slot, pid)
        proc.lane = lane
        self.next_worker += 1
        self.procs[pid] = proc
        return proc

    def announce(self, proc: Any, daemon_end: socket.socket) -> None:
        """Hand the daemon its end of the worker's socket."""
        message = {"t": "worker", **proc.describe()}
        self.protocol.send(self.control, self.protocol.encode(message), (daemon_end.fileno(),))
        daemon_end.close()
        proc.daemon_end = None
        proc.announced = True
        self.boot_failures = 0

    def kill_worker(self, proc: Any, sig: int = SIGKILL) -> None:
        proc.killed = True  # its slot is free now (_held_slots): no backoff after a kill
        if proc.slot is not None:
            self.quick_deaths[proc.slot] = 0
        try:  # noqa: SIM105 (contextlib costs ms to import)
            os.kill(proc.pid, sig)
        except ProcessLookupError:
            pass

    def reap_workers(self) -> None:
        """Collect every dead child; ones that are not workers are orphans."""
        for pid, status in self.launch.reap_children():
            proc = self.procs.pop(pid, None)
            if proc is not None:
                self._worker_gone(proc, status)
            elif pid == self.relay_pid and self.terminate_by is None:
                self._start_relay()

    def _stop_relay(self) -> None:
        """Outside a pid namespace (tests) nothing else would end the relay."""
        if self.relay_pid is not None:
            os.kill(self.relay_pid, SIGKILL)
            self.relay_pid = None

    def _start_relay(self) -> None:
        """--egress-socket: the loopback relay to the daemon's egress proxy."""
        if self.args.egress_socket:
            path = os.path.join(self.args.harness_dir, "egress_relay.py")
            self.relay = self.load(path, "_scriptd_egress_relay")
            self.relay_pid = self.relay.setup(self.args.egress_port, self.args.egress_socket)
            self.lanes = len(self.relay.lane_sockets(self.args.egress_socket))

    def _worker_gone(self, proc: Any, status: int) -> None:
        if proc.status_fd is not None:
            self._read_status(proc, final=True)
        if proc.daemon_end is not None:
            proc.daemon_end.close()
        code, sig = self.launch.decode_wait_status(status)
        if proc.announced and self.control.fileno() >= 0:
            exit_info = {"code": code, "signal": sig, "killed": proc.killed}
            if sig == SIGABRT and self.args.language == "javascript":  # how V8 gives up
                exit_info.update(self.launch.heap_exhaustion(proc.pid))
            self.send({"t": "worker_exit", **proc.describe(), **exit_info})
        elif not proc.ready and self.terminate_by is None:
            self._boot_failed(proc, code, sig)
        if proc.slot is not None and not proc.killed:  # a killed one's was filled at the kill
            self._schedule_respawn(proc)

    def _schedule_respawn(self, proc: Any) -> None:
        quick = time.monotonic() - proc.started < QUICK_DEATH_S
        deaths = self.quick_deaths[proc.slot] + 1 if quick else 0
        self.quick_deaths[proc.slot] = deaths
        self.slot_free_at[proc.slot] = time.monotonic() + self.launch.respawn_delay(deaths)

    def _boot_failed(self, proc: Any, code: int | None, sig: int | None) -> None:
        self.boot_failures += 1
        if self.boot_failures >= MAX_BOOT_FAILURES:
            self.load_failed(self.launch.boot_error(self.boot_failures, code, sig))

    # --- spawned workers' status pipes ------------------------------------
    def _read_status(self, proc: Any, final: bool = False) -> None:
        status = self.launch.read_status(proc, final)
        if status is None:
            return
        self.selector.unregister(proc.status_fd)
        os.close(proc.status_fd)
        proc.status_fd = None
        proc.ready = status["t"] == "ready"
        if proc.ready and proc.slot is not None and proc.daemon_end is not None:
            if not self.hello_sent:
                self.send_hello(
                    status["functions"], status["load_ms"], status["version"], status.get("step")
                )
            self.announce(proc, proc.daemon_end)
        elif status["t"] == "load_error" and not self.hello_sent:
            self.load_failed(status["error"], status.get("load_ms"))

    # --- control socket ---------------------------------------------------
    def _read_control(self) -> None:
        try:
            data = self.control.recv(1 << 16)
        except ConnectionError:
            data = b""
        if not data:  # the daemon is gone: nobody to serve
            self.halt(0)
        try:
            messages = self.decoder.feed(data)
        except self.protocol.ProtocolError as exc:
            self.send({"t": "error", "message": str(exc)})
            self.halt(2)
        for message in messages:
            self.handle(message)

    def handle(self, message: dict[str, Any]) -> None:
        kind = message["t"]
        if kind == "kill_worker":
            for proc in self.procs.values():
                if proc.worker == message.get("worker"):
                    self.kill_worker(proc)
        elif kind == "ping":
            workers = [p.describe() for p in self.procs.values() if p.announced]
            self.send({"t": "pong", "id": message.get("id"), "workers": workers})
        elif kind == "shutdown":
            self.begin_shutdown()
        else:
            self.send({"t": "error", "message": f"unknown message type {kind!r}"})

    def send(self, message: dict[str, Any]) -> None:
        try:
            self.protocol.send(self.control, self.protocol.encode(message))
        except OSError:
            self.halt(0)

    # --- signals and the end ----------------------------------------------
    def _handle_signals(self) -> None:
        while self.signals:
            sig = self.signals.pop(0)
            if sig == _signal.SIGCHLD:
                self.reap_workers()
            else:
                self.begin_shutdown()

    def begin_shutdown(self) -> None:
        """SIGTERM every worker; manage_workers SIGKILLs them after GRACE_S."""
        if self.terminate_by is None:
            self.terminate_by = time.monotonic() + GRACE_S
            for proc in list(self.procs.values()):
                self.kill_worker(proc, _signal.SIGTERM)

    def _timeout(self) -> float | None:
        filled = self._held_slots()
        pending = [t for s, t in self.slot_free_at.items() if s not in filled]
        if self.terminate_by is not None:
            pending = [self.terminate_by]
        return max(0.0, min(pending) - time.monotonic()) if pending else None

    def halt(self, code: int) -> None:
        """Kill every worker (and the relay) at once, reap them, exit (never returns)."""
        self._stop_relay()
        for proc in list(self.procs.values()):
            self.kill_worker(proc, SIGKILL)
        for pid in list(self.procs):
            try:  # noqa: SIM105 (contextlib costs ms to import)
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        sys.stdout.flush()
        sys.stderr.flush()
        # os._exit: threads started by the user's main must not keep us alive.
        os._exit(code)


def _ms_since(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000, 3)

"""The in-sandbox supervisor (pid 1): loads a script, keeps K workers alive.

Run as `python -I supervisor.py --language python|javascript --workers K
--source DIR [...]` with the control socket to the daemon on fd 3; the
protocol.py docstring has every option and every message.

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
Standard library only, Python 3.8+.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import selectors
import shutil
import signal
import socket
import sys
import time
import types
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
GRACE_S = 5.0
QUICK_DEATH_S = 1.0
MAX_BOOT_FAILURES = 5
HANDLED_SIGNALS = (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def _load(path: str, name: str) -> types.ModuleType:
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class Supervisor:
    def __init__(self, args: argparse.Namespace, control: socket.socket) -> None:
        self.args = args
        self.protocol = _load(os.path.join(args.harness_dir, "protocol.py"), "_scriptd_protocol")
        self.launch = _load(os.path.join(args.harness_dir, "launch.py"), "_scriptd_launch")
        self.control = control
        self.decoder = self.protocol.FrameDecoder(args.max_frame)
        self.selector = selectors.DefaultSelector()
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
        self.harness: Any = None
        self.terminate_by: float | None = None

    # --- start -----------------------------------------------------------
    def run(self) -> int:
        self._install_signals()
        self.selector.register(self.control, selectors.EVENT_READ, "control")
        if self.args.language == "python":
            self._boot_python()
        self.slot_free_at = dict.fromkeys(range(self.args.workers), 0.0)
        # A fork is already fast; a spawned worker is booted ahead as a spare.
        default_spares = 0 if self.mode == "fork" else 1
        self.spares = default_spares if self.args.spares is None else self.args.spares
        while True:
            self.manage_workers()
            if self.terminate_by is not None and not self.procs:
                return 0
            for key, _ in self.selector.select(self._timeout()):
                if key.data == "control":
                    self._read_control()
                elif key.data == "signals":
                    self._drain_wakeup(key.fileobj)
                else:
                    self._read_status(key.data)
            self._handle_signals()

    def _boot_python(self) -> None:
        self.harness = _load(
            os.path.join(self.args.harness_dir, "python", "harness.py"), "_scriptd_harness"
        )
        t0 = time.perf_counter()
        try:
            module = self.harness.load_project(self.args.source, self.args.main)
            self.functions = self.harness.list_functions(module)
            self.harness.warm_up(self.functions)
        except BaseException as exc:
            self.load_failed(self.harness.error_info(exc), _ms_since(t0))
        load_ms = _ms_since(t0)
        import threading

        threaded = threading.active_count() > 1
        self.mode = (
            self.args.mode if self.args.mode != "auto" else ("spawn" if threaded else "fork")
        )
        self.send_hello(list(self.functions), load_ms, self.harness.runtime_version())

    def send_hello(self, functions: list[str], load_ms: float, version: str) -> None:
        a = self.args
        self.send({"t": "hello", "language": a.language, "version": version,
                   "runtime": f"{self._runtime_name()} {version}", "functions": functions,
                   "load_ms": load_ms, "pid": os.getpid(), "workers": a.workers,
                   "mode": self.mode})  # fmt: skip
        self.hello_sent = True

    def load_failed(self, error: dict[str, str], load_ms: float | None = None) -> None:
        message = {"t": "load_error", "language": self.args.language,
                   "runtime": self._runtime_name(), "load_ms": load_ms, "error": error}  # fmt: skip
        with contextlib.suppress(OSError):
            self.protocol.send(self.control, self.protocol.encode(message))
        self.halt(self.protocol.LOAD_ERROR_EXIT)

    def _runtime_name(self) -> str:
        return "python" if self.args.language == "python" else "node"

    # --- the pool's verbs -------------------------------------------------
    def manage_workers(self) -> None:
        """Fill every empty slot whose backoff has passed."""
        if self.terminate_by is not None:
            if time.monotonic() >= self.terminate_by:
                for proc in list(self.procs.values()):
                    self.kill_worker(proc, signal.SIGKILL)
            return
        busy = {p.slot for p in self.procs.values()}
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

    def _spare(self) -> Any:
        """A spare to fill a slot with: a booted one, else one still booting
        (it is ahead of a process we would start now)."""
        spares = [p for p in self.procs.values() if p.slot is None and not p.killed]
        spares.sort(key=lambda p: (not p.ready, p.started))
        return spares[0] if spares else None

    def spawn_worker(self, slot: int | None) -> None:
        """A worker for `slot`, or a spare (slot None) when spawned ones are slow to boot."""
        daemon_end, worker_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        if self.mode == "fork":
            serve = lambda: self._serve_forked(worker_end, daemon_end)  # noqa: E731
            pid = self.launch.fork_process(serve, HANDLED_SIGNALS)
            proc = self._track(slot, pid)
            proc.ready = True
            self.announce(proc, daemon_end)
        else:
            pid, status_fd = self.launch.spawn_process(
                self.launch.worker_argv(self.args), worker_end
            )
            proc = self._track(slot, pid)
            proc.daemon_end = daemon_end
            proc.status_fd = status_fd
            self.selector.register(status_fd, selectors.EVENT_READ, proc)
        worker_end.close()

    def _serve_forked(self, worker_end: socket.socket, daemon_end: socket.socket) -> int:
        """In a forked child: drop what belongs to the supervisor, then serve."""
        daemon_end.close()
        for key in list(self.selector.get_map().values()):
            if isinstance(key.fileobj, int):
                os.close(key.fileobj)
        self.selector.close()
        os.close(self._wakeup_write)
        self.control.close()
        worker = self.harness.Worker(
            worker_end, self.functions, self.args.max_output, self.args.max_frame
        )
        return worker.serve()

    def _track(self, slot: int | None, pid: int) -> Any:
        proc = self.launch.Proc(self.next_worker, slot, pid)
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

    def kill_worker(self, proc: Any, sig: int = signal.SIGKILL) -> None:
        proc.killed = True
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, sig)

    def reap_workers(self) -> None:
        """Collect every dead child; ones that are not workers are orphans."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            proc = self.procs.pop(pid, None)
            if proc is not None:
                self._worker_gone(proc, status)

    def _worker_gone(self, proc: Any, status: int) -> None:
        if proc.status_fd is not None:
            self._read_status(proc, final=True)
        if proc.daemon_end is not None:
            proc.daemon_end.close()
        code, sig = self.launch.decode_wait_status(status)
        if proc.announced and self.control.fileno() >= 0:
            exit_info = {"code": code, "signal": sig, "killed": proc.killed}
            self.send({"t": "worker_exit", **proc.describe(), **exit_info})
        elif not proc.ready and self.terminate_by is None:
            self._boot_failed(proc, code, sig)
        if proc.slot is not None:
            self._schedule_respawn(proc)

    def _schedule_respawn(self, proc: Any) -> None:
        quick = not proc.killed and time.monotonic() - proc.started < QUICK_DEATH_S
        deaths = self.quick_deaths[proc.slot] + 1 if quick else 0
        self.quick_deaths[proc.slot] = deaths
        delay = 0.0 if deaths <= 1 else min(0.05 * 2 ** (deaths - 2), 2.0)
        self.slot_free_at[proc.slot] = time.monotonic() + delay

    def _boot_failed(self, proc: Any, code: int | None, sig: int | None) -> None:
        self.boot_failures += 1
        if self.boot_failures >= MAX_BOOT_FAILURES:
            how = f"signal {sig}" if sig else f"exit code {code}"
            self.load_failed(
                {
                    "type": "WorkerBootError",
                    "traceback": "",
                    "message": f"workers died before loading main {self.boot_failures} "
                    f"times in a row (last: {how})",
                }
            )

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
                self.send_hello(status["functions"], status["load_ms"], status["version"])
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
    def _install_signals(self) -> None:
        read_end, write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
        self.selector.register(read_end, selectors.EVENT_READ, "signals")
        self._wakeup_write = write_end
        for sig in HANDLED_SIGNALS:
            signal.signal(sig, lambda signum, _frame: self.signals.append(signum))

    def _drain_wakeup(self, fd: Any) -> None:
        try:
            while os.read(fd, 512):
                pass
        except BlockingIOError:
            pass

    def _handle_signals(self) -> None:
        while self.signals:
            sig = self.signals.pop(0)
            if sig == signal.SIGCHLD:
                self.reap_workers()
            else:
                self.begin_shutdown()

    def begin_shutdown(self) -> None:
        """SIGTERM every worker; manage_workers SIGKILLs them after GRACE_S."""
        if self.terminate_by is None:
            self.terminate_by = time.monotonic() + GRACE_S
            for proc in list(self.procs.values()):
                self.kill_worker(proc, signal.SIGTERM)

    def _timeout(self) -> float | None:
        filled = {p.slot for p in self.procs.values()}
        pending = [t for s, t in self.slot_free_at.items() if s not in filled]
        if self.terminate_by is not None:
            pending = [self.terminate_by]
        return max(0.0, min(pending) - time.monotonic()) if pending else None

    def halt(self, code: int) -> None:
        """Kill every worker at once, reap them, exit (never returns)."""
        for proc in list(self.procs.values()):
            self.kill_worker(proc, signal.SIGKILL)
        for pid in list(self.procs):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        sys.stdout.flush()
        sys.stderr.flush()
        # os._exit: threads started by the user's main must not keep us alive.
        os._exit(code)


def _ms_since(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000, 3)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="supervisor.py")
    parser.add_argument("--language", choices=("python", "javascript"), required=True)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--source", required=True)
    parser.add_argument("--harness-dir", default=HERE)
    parser.add_argument("--node", default=shutil.which("node") or "/usr/bin/node")
    parser.add_argument("--main", default=None, help="main.py / main.js by default")
    parser.add_argument("--max-output", type=int, default=1024 * 1024)
    parser.add_argument("--max-frame", type=int, default=16 * 1024 * 1024)
    parser.add_argument("--mode", choices=("auto", "fork", "spawn"), default="auto")
    parser.add_argument("--spares", type=int, default=None, help="0 (fork), 1 (spawn)")
    parser.add_argument("--control-fd", type=int, default=3)
    args = parser.parse_args(argv)
    args.workers = max(1, args.workers)
    args.harness_dir = os.path.abspath(args.harness_dir)
    args.source = os.path.abspath(args.source)
    if args.main is None:
        args.main = "main.py" if args.language == "python" else _node_main(args.source)
    return args


def _node_main(source: str) -> str:
    for name in ("main.js", "main.mjs", "main.cjs"):
        if os.path.exists(os.path.join(source, name)):
            return name
    return "main.js"


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    control = socket.socket(fileno=args.control_fd)
    supervisor = Supervisor(args, control)
    supervisor.launch.become_subreaper()
    supervisor.run()
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])

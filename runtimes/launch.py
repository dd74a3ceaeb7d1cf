"""How the supervisor makes a worker process and reads what it says at birth.

Two ways: fork() from the loaded supervisor (python, the fast path), or
posix_spawn() of a fresh interpreter running a harness with the worker socket
as fd 3 and a status pipe as fd 4 (node always; python when fork is unsafe).
posix_spawn, not subprocess with preexec_fn: it is safe in a process that
has threads (the user's main may have started some) and it is quick.
A spawned worker writes one JSON line on the status pipe once main is loaded:
{"t":"ready",...} or {"t":"load_error","error":{...}}.
Standard library only, Python 3.8+; loaded by path by arbiter.py.
"""

from __future__ import annotations

import _signal
import fcntl
import os
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: typing and collections cost milliseconds to import
    import socket
    from collections.abc import Callable, Iterable, Iterator
    from typing import Any


class Proc:
    """One worker process as the supervisor sees it."""

    def __init__(self, worker: int, slot: int | None, pid: int) -> None:
        self.worker = worker  # unique for the supervisor's life; the daemon's handle
        self.slot = slot  # None: a spare, booted ahead, waiting for a slot to free
        self.ready = False  # main loaded (forked workers are born ready)
        self.pid = pid
        self.started = time.monotonic()
        self.announced = False
        self.killed = False
        self.daemon_end: socket.socket | None = None  # held until announced
        self.status_fd: int | None = None  # spawned workers, until ready
        self.status_buf = b""
        self.lane: int | None = None  # its own port to the egress relay (HTTP log per call)

    def describe(self) -> dict[str, int]:
        found = {"worker": self.worker, "slot": self.slot, "pid": self.pid}
        if self.lane is not None:
            found["lane"] = self.lane
        return found


def fork_process(child: Callable[[], int], signals: tuple[int, ...]) -> int:
    """fork(); the child runs `child` and exits with what it returns (70 if it
    raises), never returning into the supervisor's code.

    `signals` (the supervisor's handled ones) are blocked across the fork and
    set back to their defaults in the child before they are unblocked: a
    SIGTERM sent to a fresh worker must kill it, not run the supervisor's
    handler in the child.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    _signal.pthread_sigmask(_signal.SIG_BLOCK, signals)
    pid = os.fork()
    if pid:
        _signal.pthread_sigmask(_signal.SIG_UNBLOCK, signals)
        return pid
    code = 70
    try:
        _signal.set_wakeup_fd(-1)
        for sig in signals:
            _signal.signal(sig, _signal.SIG_DFL)
        _signal.pthread_sigmask(_signal.SIG_UNBLOCK, signals)
        code = child()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:  # noqa: SIM105 (contextlib costs ms to import)
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)


def fork_held(child: Callable[[], int], signals: tuple[int, ...]) -> tuple[int, int]:
    """fork_process, but the child waits until the parent closes the returned fd before it
    runs `child`. Returns (pid, that fd).

    Why: a new child can take its parent's CPU at once (measured: the worker's frame left
    the supervisor 1 ms after the fork at load 5), and that frame is what the daemon needs
    next; the child's own start then goes on while the daemon takes the worker in."""
    held, release = os.pipe()

    def wait_then_run() -> int:
        os.close(release)
        os.read(held, 1)  # end of file: the parent has closed `release`
        os.close(held)
        return child()

    try:
        pid = fork_process(wait_then_run, signals)
    except BaseException:
        os.close(release)
        raise
    finally:
        os.close(held)
    return pid, release


def spawn_process(
    argv: list[str], worker_end: socket.socket, env: dict[str, str] | None = None
) -> tuple[int, int]:
    """Start argv with worker_end as fd 3 and a status pipe as fd 4, in `env` (else
    this process's environment).

    Returns (pid, read end of the status pipe, non-blocking)."""
    status_r, pipe_w = os.pipe()
    os.set_blocking(status_r, False)
    # Copies numbered >= 10, so the dup2s to 3 and 4 below cannot clash.
    sock_fd, status_w = _above(worker_end.fileno()), _above(pipe_w)
    os.close(pipe_w)
    try:
        actions = [(os.POSIX_SPAWN_DUP2, sock_fd, 3), (os.POSIX_SPAWN_DUP2, status_w, 4)]
        environ = dict(os.environ) if env is None else env
        pid = os.posix_spawn(argv[0], argv, environ, file_actions=actions)
    except BaseException:
        os.close(status_r)
        raise
    finally:
        os.close(sock_fd)
        os.close(status_w)
    return pid, status_r


def worker_argv(args: Any) -> list[str]:
    common = ["--fd", "3", "--status-fd", "4", "--source", args.source, "--main", args.main,
              "--max-output", str(args.max_output), "--max-frame", str(args.max_frame),
              "--kind", args.kind]  # fmt: skip
    if args.step_spec is not None:
        common += ["--step-spec", args.step_spec]
    if args.concurrency > 1:
        common += ["--concurrency", str(args.concurrency)]
    if args.language == "python":
        harness = os.path.join(args.harness_dir, "python", "harness.py")
        return [sys.executable, "-I", harness, *common]
    # With egress, the harness sets the undici inside node as fetch's proxy agent,
    # which only node's internal modules expose (runtimes/node/egress.mjs).
    flags = ["--expose-internals"] if args.egress_socket else []
    # A fatal error (the V8 heap exhausted) leaves a small report in /tmp that
    # heap_exhaustion() reads when the worker dies of it.
    flags += ["--report-on-fatalerror", "--report-compact", "--report-directory=/tmp"]
    if args.node_heap_mb:
        flags.append(f"--max-old-space-size={args.node_heap_mb}")
    return [args.node, *flags, os.path.join(args.harness_dir, "node", "harness.mjs"), *common]


def heap_exhaustion(pid: int) -> dict[str, Any]:
    """{"oom": "heap", "heap_limit": bytes} when node worker `pid` died because its V8
    heap was exhausted (its fatal-error report says so), else {}. Removes its reports."""
    found: dict[str, Any] = {}
    try:
        names = [n for n in os.listdir("/tmp") if n.startswith("report.") and f".{pid}." in n]
    except OSError:
        return found
    for name in names:
        path = os.path.join("/tmp", name)
        try:
            with open(path, "rb") as f:
                report = f.read(1 << 22)
            os.unlink(path)
            import json  # a dead node worker only

            doc = json.loads(report)
            if doc["header"]["trigger"] == "OOMError":
                found = {"oom": "heap", "heap_limit": int(doc["javascriptHeap"]["memoryLimit"])}
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return found


def read_status(proc: Proc, final: bool) -> dict[str, Any] | None:
    """The status line once it is complete (or the worker is gone: final);
    None while more is to come. {"t": "died"} when it said nothing."""
    assert proc.status_fd is not None
    eof = False
    try:
        while not eof:
            data = os.read(proc.status_fd, 65536)
            proc.status_buf += data
            eof = not data
    except BlockingIOError:
        pass
    if not (eof or final or b"\n" in proc.status_buf):
        return None
    line = proc.status_buf.split(b"\n", 1)[0]
    try:
        import json  # spawned workers only: their start costs far more

        status = json.loads(line) if line.strip() else {"t": "died"}
    except ValueError:
        status = {"t": "died"}
    return status if isinstance(status, dict) else {"t": "died"}


def decode_wait_status(status: int) -> tuple[int | None, int | None]:
    """(exit code, None) or (None, signal number)."""
    if os.WIFSIGNALED(status):
        return None, os.WTERMSIG(status)
    return os.WEXITSTATUS(status), None


def reap_children() -> Iterator[tuple[int, int]]:
    """(pid, wait status) of every child that has died, without blocking."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        yield pid, status


def free_lane(procs: Iterable[Proc], lanes: int) -> int | None:
    """The lowest of `lanes` egress lanes no worker in `procs` holds (a killed worker
    keeps its lane until reaped); None when there are no lanes or all are taken: such
    a worker uses the replica's shared port."""
    taken = {p.lane for p in procs}
    return next((n for n in range(lanes) if n not in taken), None)


def become_subreaper() -> None:
    """Outside a pid namespace, adopt orphaned grandchildren like pid 1 would."""
    if os.getpid() == 1:
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except (ImportError, OSError, AttributeError):  # no ctypes/libc: stay as we are
        pass


def _above(fd: int) -> int:
    """A close-on-exec copy of fd numbered >= 10."""
    return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)


def respawn_delay(quick_deaths: int) -> float:
    """Seconds before a slot whose worker died `quick_deaths` times in a row right after
    starting gets a new one: none for the first, then doubling from 50 ms up to 2 s."""
    return 0.0 if quick_deaths <= 1 else min(0.05 * 2 ** (quick_deaths - 2), 2.0)


def boot_error(failures: int, code: int | None, sig: int | None) -> dict[str, str]:
    """The load error sent when workers keep dying before main is loaded."""
    how = f"signal {sig}" if sig else f"exit code {code}"
    message = f"workers died before loading main {failures} times in a row (last: {how})"
    return {"type": "WorkerBootError", "traceback": "", "message": message}

"""A running sandbox: its pid, an event-loop-friendly wait, kill, usage and cleanup."""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import signal
import threading
from dataclasses import dataclass

from . import libc
from .cgroups import MemoryProbe, SandboxCgroup
from .move_warmer import WARMER


@dataclass(frozen=True)
class Usage:
    cpu_seconds: float  # user + system CPU of the whole tree
    memory_bytes: int  # memory charged to the tree now (bytes)
    memory_peak_bytes: int  # highest memory charge seen by the cgroup (bytes)
    oom_kills: int  # processes the kernel killed for exceeding memory_bytes


@dataclass(frozen=True)
class Exit:
    code: int | None  # exit status of pid 1 if it exited
    signal: int | None  # signal that killed pid 1, if any
    oom: bool  # the cgroup hit its memory limit and the kernel killed a process
    killed: bool  # Sandbox.kill() was called
    reason: str  # one line for people: "exit code 0", "out of memory", ...
    usage: Usage | None = None  # usage at exit


def classify(code: int | None, sig: int | None, oom: bool, killed: bool) -> str:
    if killed:
        return "killed on request"
    if oom:
        return "out of memory"
    if sig is not None:
        return f"killed by signal {signal.Signals(sig).name}"
    return f"exit code {code}"


class Sandbox:
    """Handle of one started sandbox. Its pid 1 is a child of this process."""

    def __init__(self, pid: int, pidfd: int, cgroup: SandboxCgroup, name: str):
        self.pid = pid  # host pid of the sandbox's pid 1
        self.name = name
        self.cgroup = cgroup
        self._pidfd = pidfd
        self._killed = False
        self._exit: Exit | None = None
        self._final_usage: Usage | None = None
        self._lock = threading.Lock()
        self._cleaned = False
        self._exited: asyncio.Future[None] | None = None
        self._moves_expected = 0  # track_memory calls before the move warmth ends
        self._moves_lock = threading.Lock()  # never held across a write: the loop takes it

    @property
    def exit(self) -> Exit | None:
        return self._exit

    async def wait(self) -> Exit:
        """Wait for pid 1 to exit (the kernel then kills the rest of the tree).

        Never blocks the loop: the pidfd becomes readable when pid 1 exits. Any
        number of tasks may wait at once; they share one reader.
        """
        if self._exit is not None:
            return self._exit
        if self._exited is None:
            loop = asyncio.get_running_loop()
            exited: asyncio.Future[None] = loop.create_future()

            def readable() -> None:
                loop.remove_reader(self._pidfd)
                if not exited.done():
                    exited.set_result(None)

            loop.add_reader(self._pidfd, readable)
            self._exited = exited
        await asyncio.shield(self._exited)
        return self._reap()

    def wait_blocking(self, timeout: float | None = None) -> Exit | None:
        """For threads and CLIs: the Exit, or None if still running after `timeout` s."""
        if self._exit is None:
            readable, _, _ = select.select([self._pidfd], [], [], timeout)
            if not readable:
                return None
        return self._reap()

    def _reap(self) -> Exit:
        with self._lock:
            if self._exit is not None:
                return self._exit
            info = os.waitid(os.P_PIDFD, self._pidfd, os.WEXITED)
            assert info is not None
            code = info.si_status if info.si_code == os.CLD_EXITED else None
            sig = None if code is not None else info.si_status
            self.cgroup.kill()  # nothing should be left; be sure
            usage = self.usage()
            oom = usage.oom_kills > 0
            self._exit = Exit(
                code, sig, oom, self._killed, classify(code, sig, oom, self._killed), usage
            )
            return self._exit

    def kill(self) -> None:
        """SIGKILL the whole tree: pid 1 (its namespace dies with it) and the cgroup."""
        if self._exit is not None:
            return
        self._killed = True
        with contextlib.suppress(ProcessLookupError):
            libc.pidfd_send_signal(self._pidfd, signal.SIGKILL)
        self.cgroup.kill()

    def usage(self) -> Usage:
        if self._final_usage is not None:
            return self._final_usage
        now, peak = self.cgroup.memory()
        return Usage(self.cgroup.cpu_seconds(), now, peak, self.cgroup.oom_kills())

    def track_memory(self, name: str, ns_pid: int) -> MemoryProbe | None:
        """Measure the peak memory of one child of pid 1 (named by its pid inside the
        sandbox) in a memory cgroup of its own (SandboxCgroup.process_memory); None
        when it cannot be found or measured. The child is also made the kernel's
        preferred victim when the sandbox runs out of memory (prefer_oom_victim)."""
        host = child_host_pid(self.pid, ns_pid)
        probe = None
        if host is not None:
            prefer_oom_victim(host)
            probe = self.cgroup.process_memory(name, host)
        with self._moves_lock:
            self._moves_expected -= 1
            if self._moves_expected <= 0:
                WARMER.done(self)
        return probe

    def expect_moves(self, count: int, seconds: float) -> None:
        """`count` processes of this sandbox will be moved (track_memory) within about
        `seconds`: keep the kernel's cgroup attach lock warm until then, so that each
        move takes microseconds instead of an RCU grace period (sandbox/move_warmer.py).
        Past `seconds` a move still works, at the cold price."""
        with self._moves_lock:
            self._moves_expected = max(self._moves_expected, 0) + count
            WARMER.want(self, seconds, self._rejoin)

    def move_is_quick(self) -> bool:
        """A track_memory made now takes microseconds (the lock is warm, see
        expect_moves), so it may be made on an event loop; else make it in a thread."""
        return WARMER.quick()

    def _rejoin(self) -> bool:
        """The warmer's move that changes nothing: pid 1 into its own v1 cgroup. Under
        the lock _reap takes, so pid 1 is not reaped meanwhile and its pid names no
        other process (a reap at that moment waits for the write: microseconds when
        warm, one grace period for the first write of a window)."""
        with self._lock:
            if self._exit is not None or self._cleaned:
                return False
            return self.cgroup.rejoin(self.pid)

    def cleanup(self) -> None:
        """Kill anything left, reap pid 1 and remove the cgroups. Idempotent.

        After an exit this is a few rmdir calls; before one it kills and waits, so
        from the event loop prefer calling it after wait() (or in a thread).
        """
        if self._cleaned:
            return
        if self._exit is None:
            self.kill()
            self.wait_blocking()
        WARMER.done(self)
        self._final_usage = self.usage()
        self.cgroup.remove()
        os.close(self._pidfd)
        self._cleaned = True

    def __repr__(self) -> str:
        return f"<Sandbox {self.name} pid={self.pid} exit={self._exit}>"


# Past the sandbox's memory limit the kernel should kill a worker, which pid 1 (the
# supervisor) replaces, not pid 1, whose death ends the replica. A worker cannot raise
# its own score: the sandbox's /proc is read-only (EROFS), so it is set from here.
WORKER_OOM_SCORE_ADJ = 500


def prefer_oom_victim(host_pid: int) -> None:
    """Raise the oom_score_adj of a child of a sandbox's pid 1, found as its child a
    moment before (the same window as the cgroup move that follows); gone: nothing."""
    with contextlib.suppress(OSError):
        fd = os.open(f"/proc/{host_pid}/oom_score_adj", os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, b"%d" % WORKER_OOM_SCORE_ADJ)
        finally:
            os.close(fd)


def child_host_pid(parent: int, ns_pid: int) -> int | None:
    """The pid, in our namespace, of the child of `parent` whose pid in its own (the
    sandbox's) namespace is `ns_pid`: the last NSpid of /proc/<child>/status."""
    try:
        tasks = os.listdir(f"/proc/{parent}/task")
    except OSError:
        return None
    for task in tasks:
        try:
            with open(f"/proc/{parent}/task/{task}/children") as f:
                children = f.read().split()
        except OSError:
            continue
        for child in children:
            if _ns_pid(child) == ns_pid:
                return int(child)
    return None


def _ns_pid(pid: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("NSpid:"):
                    return int(line.split()[-1])
    except (OSError, ValueError):
        return None
    return None

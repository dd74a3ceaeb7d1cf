"""start(): have the zygote (or a forked launcher) create pid 1 in new namespaces,
wait for exec.

Pid 1 is cloned from the zygote (sandbox/zygote.py), a small process started once,
because cloning copies the cloner's address space and the daemon's is large. The
zygote does what the forked launcher below does; without one (it cannot be started)
a launcher is forked from this process as follows.

Forking from a threaded asyncio daemon: os.fork() copies only the calling
thread. CPython takes the import lock and glibc the malloc locks around fork,
so the child can allocate and run Python; what it must not do is touch locks
other threads may have held at fork time (logging, user locks, the event
loop). So the child runs only contain.launch/contain.contain, on a plan
computed here, with modules imported here, and execs within milliseconds.
The asyncio wakeup fd is dropped first so a signal in that window cannot
reach the daemon's loop.

The launcher is the forked child; it clones pid 1 with CLONE_PARENT, so pid 1
is this process's child, reports its pid and exits. Pid 1 is born in its
unified (v2) cgroup (clone3 CLONE_INTO_CGROUP) and moves itself into its v1
cgroups first thing: neither takes the global lock a cgroup.procs write takes,
which can wait for an RCU grace period. Pid 1 reports any failure before exec
through a close-on-exec pipe: end of file with no message means exec succeeded.

Linux sends the parent-death signal when the *thread* that created pid 1's parent
exits: the zygote's is a thread of its own that never exits; without the zygote, call
start() from threads that outlive the sandbox (the event loop's thread or a long-lived
executor). Many threads may call start() at once.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import threading
import time

from . import rlimits, seccomp
from . import zygote as _zygote
from .cgroups import CgroupRoot, Limits, SandboxCgroup
from .contain import ChildPlan, launch
from .handle import Sandbox
from .mounts import plan_mounts
from .spec import SandboxError, SandboxSpec

HANDSHAKE_TIMEOUT_S = 30.0
_devnull_lock = threading.Lock()
_devnull: int | None = None


def _dev_null() -> int:
    global _devnull
    with _devnull_lock:
        if _devnull is None:
            _devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        return _devnull


def _plan(
    spec: SandboxSpec, cgroup: SandboxCgroup, cgroup_fd: int | None, go_fd: int | None
) -> ChildPlan:
    null = _dev_null()
    fds = {0: spec.stdin, 1: spec.stdout, 2: spec.stderr}
    all_fds = {k: (null if v is None else v) for k, v in fds.items()} | dict(spec.pass_fds)
    return ChildPlan(
        argv=spec.argv,
        env=dict(spec.env),
        cwd=spec.cwd,
        uid=spec.uid,
        gid=spec.gid,
        hostname=spec.hostname,
        network=spec.network,
        mounts=plan_mounts(spec),
        rlimits=rlimits.limits(spec.rlimits),
        fds=all_fds,
        seccomp_bpf=seccomp.compiled() if spec.seccomp else None,
        cgroup_fd=cgroup_fd,
        cgroup_tasks=cgroup.v1_tasks_files(),
        cgroup_procs=cgroup.unified_procs_file(),
        go_fd=go_fd,
    )


class _Handshake:
    """The parent's end of the pipe: "pid N" from the launcher, "error ..." from pid 1."""

    def __init__(self, fd: int):
        self.fd = fd
        self.buf = b""
        self.deadline = time.monotonic() + HANDSHAKE_TIMEOUT_S
        self.eof = False

    def _read(self) -> None:
        left = self.deadline - time.monotonic()
        if left <= 0 or not select.select([self.fd], [], [], left)[0]:
            raise SandboxError("sandbox setup timed out")
        chunk = os.read(self.fd, 4096)
        self.eof = not chunk
        self.buf += chunk

    def init_pid(self) -> int | None:
        """Wait for the launcher's report; None if it failed (see errors()). Pid 1 runs
        as soon as it is cloned: its own lines ("parked", an error) may come first."""
        while True:
            for line in self._lines():
                if line.startswith("pid "):
                    return int(line[4:])
            if self.eof:
                return None
            self._read()

    def errors(self) -> list[str]:
        """Read to end of file (exec succeeded or everything failed); the errors seen."""
        while not self.eof:
            self._read()
        return self._errors()

    def parked(self) -> list[str]:
        """A parked pid 1: read until it says "parked" (no errors) or fails (the errors)."""
        while "parked" not in self._lines() and not self.eof:
            self._read()
        if self.eof:
            return self._errors() or ["pid 1 exited before it parked"]
        return []

    def restart_clock(self) -> None:
        """A parked pid 1's release: a new deadline for its exec."""
        self.deadline = time.monotonic() + HANDSHAKE_TIMEOUT_S

    def close(self) -> None:
        os.close(self.fd)

    def _lines(self) -> list[str]:
        """The whole lines read so far."""
        return self.buf.decode(errors="replace").split("\n")[:-1]

    def _errors(self) -> list[str]:
        return [line[6:] for line in self._lines() if line.startswith("error ")]


def _fork_launcher(plan: ChildPlan, w: int) -> int:
    pid = os.fork()
    if pid == 0:
        try:
            with contextlib.suppress(ValueError, OSError):
                signal.set_wakeup_fd(-1)
            launch(plan, w)
        finally:
            os._exit(127)
    return pid


def _start(
    spec: SandboxSpec, cgroup: SandboxCgroup, go_fd: int | None = None
) -> tuple[int, _Handshake | None]:
    """Fork the launcher, learn pid 1's pid, read the pipe to its end (exec or error).
    With `go_fd`, pid 1 parks before its exec (sandbox/parked.py): read only until it
    says so, and hand the handshake over (still open) with its pid."""
    unified = cgroup.unified
    cgroup_fd = os.open(unified, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC) if unified else None
    r, w = os.pipe2(os.O_CLOEXEC)
    init_pid = None
    try:
        plan = _plan(spec, cgroup, cgroup_fd, go_fd)
        zygote = _zygote.get()
        launcher = None if zygote is not None and zygote.send(plan, w) else _fork_launcher(plan, w)
        os.close(w)
        w = -1
        handshake = _Handshake(r)
        try:
            init_pid = handshake.init_pid()
        finally:
            if launcher is not None:
                os.waitpid(launcher, 0)
        errors = handshake.parked() if go_fd is not None else handshake.errors()
        if errors or init_pid is None:
            raise SandboxError(errors[0] if errors else "launcher exited without starting pid 1")
        if go_fd is None:
            return init_pid, None
        r = -1  # the parked sandbox's now
        return init_pid, handshake
    except BaseException:
        if init_pid is not None:
            with contextlib.suppress(ChildProcessError):
                os.kill(init_pid, signal.SIGKILL)
                os.waitpid(init_pid, 0)
        raise
    finally:
        for fd in (r, w, -1 if cgroup_fd is None else cgroup_fd):
            if fd >= 0:
                os.close(fd)


def prepare() -> None:
    """Start the zygote (sandbox/zygote.py) now rather than at the first start."""
    _zygote.get()


def start(spec: SandboxSpec, root: CgroupRoot) -> Sandbox:
    """Start the sandbox; return once its command is exec'd. Raises SandboxError."""
    limits = Limits(spec.cpu_vcpus, spec.memory_bytes, spec.pids_max)
    cgroup = root.new(spec.name, limits)
    try:
        init_pid, _ = _start(spec, cgroup)
        pidfd = os.pidfd_open(init_pid)
    except BaseException as e:
        cgroup.kill()
        cgroup.remove()
        if isinstance(e, (SandboxError, KeyboardInterrupt)):
            raise
        raise SandboxError(f"cannot start sandbox {spec.name}: {e}") from e
    return Sandbox(init_pid, pidfd, cgroup, spec.name)

"""A sandbox started ahead and parked before its exec: park(), then release() or discard().

Starting a sandbox (launcher.start) is mostly its launch: the clone of pid 1, the
cgroup joins, the root's mounts, credentials, seccomp. None of that depends on the
last details of the process, so it can be done ahead: `park` runs every step of
contain but the exec, and pid 1 then blocks on a pipe (its "go" pipe) that only this
process can write. `release` sends the environment (sandbox/go.py: the only part
that must be fresh at exec time) and returns the started Sandbox once pid 1 has
exec'd, exactly as start() would have. Everything else (argv, ids, mounts, limits,
descriptors, the cgroup and its name) was fixed by the spec given to `park`.

A parked pid 1 holds nothing of the caller's but the fds its spec names. If this
process dies, the go pipe's end closes: pid 1 reads end of file and exits (and it has
its parent-death signal as any sandbox). `discard` kills it, reaps it and removes its
cgroups; leftovers of a killed daemon are swept by CgroupRoot.create like any others.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import time
from collections.abc import Mapping

from . import go, libc
from .cgroups import CgroupRoot, Limits, SandboxCgroup
from .handle import Sandbox
from .launcher import HANDSHAKE_TIMEOUT_S, _Handshake, _start
from .spec import SandboxError, SandboxSpec


class Parked:
    """A parked sandbox. Its methods block (a few ms): call them from a thread."""

    def __init__(
        self, pid: int, pidfd: int, cgroup: SandboxCgroup, name: str, handshake: _Handshake,
        go_fd: int,
    ) -> None:  # fmt: skip
        self.pid = pid  # host pid of the parked pid 1
        self.name = name
        self.cgroup = cgroup
        self._pidfd = pidfd
        self._handshake = handshake
        self._go_fd = go_fd
        self._done = False  # released or discarded

    def alive(self) -> bool:
        """Still parked: pid 1 has not exited (its pidfd is not readable)."""
        if self._done:
            return False
        return not select.select([self._pidfd], [], [], 0)[0]

    def release(self, env: Mapping[str, str]) -> Sandbox:
        """Exec pid 1's command with `env`; the Sandbox once it is exec'd. Raises
        SandboxError (and the parked sandbox is discarded) if it cannot be."""
        if self._done:
            raise SandboxError(f"sandbox {self.name} was already released or discarded")
        try:
            message = go.encode(env)
            _write_all(self._go_fd, message)
            os.close(self._go_fd)
            self._go_fd = -1
            self._handshake.restart_clock()
            errors = self._handshake.errors()
            if errors:
                raise SandboxError(errors[0])
        except BaseException as e:
            self.discard()
            if isinstance(e, SandboxError | KeyboardInterrupt):
                raise
            raise SandboxError(f"cannot release sandbox {self.name}: {e}") from e
        self._done = True
        self._handshake.close()
        return Sandbox(self.pid, self._pidfd, self.cgroup, self.name)

    def discard(self) -> None:
        """Kill pid 1, reap it, remove its cgroups and close our ends. Idempotent."""
        if self._done:
            return
        self._done = True
        with contextlib.suppress(ProcessLookupError):
            libc.pidfd_send_signal(self._pidfd, signal.SIGKILL)
        self.cgroup.kill()
        with contextlib.suppress(ChildProcessError):
            os.waitid(os.P_PIDFD, self._pidfd, os.WEXITED)
        self.cgroup.remove()
        for fd in (self._go_fd, self._pidfd):
            if fd >= 0:
                os.close(fd)
        self._handshake.close()

    def __repr__(self) -> str:
        return f"<Parked {self.name} pid={self.pid}>"


def park(spec: SandboxSpec, root: CgroupRoot) -> Parked:
    """Start the sandbox of `spec` up to its exec and leave it waiting (spec.env is not
    used: the environment comes with release). Raises SandboxError."""
    limits = Limits(spec.cpu_vcpus, spec.memory_bytes, spec.pids_max)
    cgroup = root.new(spec.name, limits)
    go_r, go_w = os.pipe2(os.O_CLOEXEC)
    try:
        init_pid, handshake = _start(spec, cgroup, go_r)
        assert handshake is not None
    except BaseException as e:
        os.close(go_w)
        cgroup.kill()
        cgroup.remove()
        if isinstance(e, SandboxError | KeyboardInterrupt):
            raise
        raise SandboxError(f"cannot park sandbox {spec.name}: {e}") from e
    finally:
        os.close(go_r)
    try:
        pidfd = os.pidfd_open(init_pid)
    except OSError as e:
        os.close(go_w)
        handshake.close()
        cgroup.kill()
        with contextlib.suppress(ChildProcessError):
            os.waitpid(init_pid, 0)
        cgroup.remove()
        raise SandboxError(f"cannot park sandbox {spec.name}: {e}") from e
    return Parked(init_pid, pidfd, cgroup, spec.name, handshake, go_w)


def _write_all(fd: int, data: bytes) -> None:
    """Write the go message; pid 1 reads it as it comes (it may exceed the pipe's
    buffer). A pid 1 that stopped reading cannot hold us past the handshake's limit."""
    deadline = time.monotonic() + HANDSHAKE_TIMEOUT_S
    os.set_blocking(fd, False)
    view = memoryview(data)
    while view:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([], [fd], [], left)[1]:
            raise SandboxError("the parked sandbox did not take its go message")
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            continue

"""start(): fork a launcher, let it create pid 1 in new namespaces, wait for exec.

Forking from a threaded asyncio daemon: os.fork() copies only the calling
thread. CPython takes the import lock and glibc the malloc locks around fork,
so the child can allocate and run Python; what it must not do is touch locks
other threads may have held at fork time (logging, user locks, the event
loop). So the child runs only contain.launch/contain.contain, on a plan
computed here, with modules imported here, and execs within milliseconds.
The asyncio wakeup fd is dropped first so a signal in that window cannot
reach the daemon's loop.

The launcher is the forked child; it joins the cgroups and clones pid 1 with
CLONE_PARENT, so pid 1 is this process's child, then exits. Pid 1 reports
any failure before exec through a close-on-exec pipe: end of file with no
message means exec succeeded.

Call start() from threads that outlive the sandbox (the event loop's thread or
a long-lived executor): Linux sends the parent-death signal when the *thread*
that forked exits. Many threads may call start() at once.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import threading
import time

from . import rlimits, seccomp
from .cgroups import CgroupRoot, Limits
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


def _plan(spec: SandboxSpec, procs_files: list[str]) -> ChildPlan:
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
        procs_files=tuple(procs_files),
    )


def _read_handshake(fd: int) -> bytes:
    deadline = time.monotonic() + HANDSHAKE_TIMEOUT_S
    data = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise SandboxError("sandbox setup timed out")
        chunk = os.read(fd, 4096)
        if not chunk:
            return data
        data += chunk


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


def start(spec: SandboxSpec, root: CgroupRoot) -> Sandbox:
    """Start the sandbox; return once its command is exec'd. Raises SandboxError."""
    limits = Limits(spec.cpu_vcpus, spec.memory_bytes, spec.pids_max)
    cgroup = root.new(spec.name, limits)
    init_pid = None
    try:
        plan = _plan(spec, cgroup.procs_files())
        r, w = os.pipe2(os.O_CLOEXEC)
        try:
            launcher = _fork_launcher(plan, w)
            os.close(w)
            w = -1
            try:
                messages = _read_handshake(r).decode(errors="replace").splitlines()
            finally:
                os.waitpid(launcher, 0)
        finally:
            os.close(r)
            if w >= 0:
                os.close(w)
        errors = [m[6:] for m in messages if m.startswith("error ")]
        pids = [int(m[4:]) for m in messages if m.startswith("pid ")]
        init_pid = pids[0] if pids else None
        if errors or init_pid is None:
            raise SandboxError(errors[0] if errors else "launcher exited without starting pid 1")
        pidfd = os.pidfd_open(init_pid)
    except BaseException as e:
        cgroup.kill()
        if init_pid is not None:
            os.waitpid(init_pid, 0)
        cgroup.remove()
        if isinstance(e, (SandboxError, KeyboardInterrupt)):
            raise
        raise SandboxError(f"cannot start sandbox {spec.name}: {e}") from e
    return Sandbox(init_pid, pidfd, cgroup, spec.name)

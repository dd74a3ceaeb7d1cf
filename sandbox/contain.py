"""The one place that orders the isolation steps: it runs in the sandbox's pid 1.

Reads like a checklist. Every step runs between fork and exec in a
single-threaded copy of the daemon, so it only makes system calls on data the
parent prepared (ChildPlan) and imports nothing. A failing step is reported to
the parent through the handshake pipe as "<step>: <error>", then the process
exits with 127; the parent raises it as SandboxError.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass

from . import credentials, mounts, namespaces, rlimits, seccomp
from .mounts import MountPlan


@dataclass(frozen=True)
class ChildPlan:
    """Everything pid 1 needs, computed in the parent before fork."""

    argv: tuple[str, ...]
    env: Mapping[str, str]
    cwd: str
    uid: int
    gid: int
    hostname: str
    network: str
    mounts: MountPlan
    rlimits: tuple[tuple[int, int], ...]
    fds: Mapping[int, int]  # child fd -> inherited fd (0, 1 and 2 included)
    seccomp_bpf: bytes | None
    procs_files: tuple[str, ...]  # cgroup.procs of the sandbox's cgroups


def report(pipe: int, step: str, error: BaseException) -> None:
    text = f"error {step}: {error}".replace("\n", " ")[:2000] + "\n"
    with contextlib.suppress(OSError):
        os.write(pipe, text.encode(errors="replace"))


def contain(plan: ChildPlan, pipe: int) -> None:
    """Pid 1 of the new namespaces: isolate, then exec. Never returns."""
    step = "signals"
    try:
        credentials.reset_signals()
        step = "hostname"
        namespaces.set_hostname(plan.hostname)
        if plan.network == "none":
            step = "loopback"
            namespaces.loopback_up()
        step = "filesystem"
        mounts.build_root(plan.mounts)
        step = "descriptors"
        pipe = credentials.arrange_fds(plan.fds, pipe)
        step = "rlimits"
        rlimits.apply(plan.rlimits)
        step = "credentials"
        credentials.drop_privileges(plan.uid, plan.gid)
        step = "cwd"
        os.chdir(plan.cwd)
        if plan.seccomp_bpf is not None:
            step = "seccomp"
            seccomp.load(plan.seccomp_bpf)  # last: after this, only exec is needed
        step = "exec"
        os.execvpe(plan.argv[0], list(plan.argv), dict(plan.env))
    except BaseException as e:
        if step == "exec" and isinstance(e, FileNotFoundError):
            e = OSError(f"{plan.argv[0]}: not found (PATH={plan.env.get('PATH', '')})")
        report(pipe, step, e)
    os._exit(127)


def launch(plan: ChildPlan, pipe: int) -> None:
    """The launcher, right after fork: join the cgroups, create pid 1, report its pid.

    The cgroups are joined before the clone so pid 1 is born in them and its
    cgroup namespace is rooted there. Never returns.
    """
    step = "cgroups"
    try:
        for path in plan.procs_files:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, b"0")
            finally:
                os.close(fd)
        step = "namespaces"
        pid = namespaces.spawn_init(plan.network)
        if pid == 0:
            contain(plan, pipe)
        os.write(pipe, f"pid {pid}\n".encode())
        os._exit(0)
    except BaseException as e:
        report(pipe, step, e)
    os._exit(127)

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

from . import credentials, go, libc, mounts, namespaces, rlimits, seccomp
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
    cgroup_fd: int | None  # the unified leaf (O_PATH), for clone3's CLONE_INTO_CGROUP
    cgroup_tasks: tuple[str, ...]  # v1 "tasks" files pid 1 writes itself into
    cgroup_procs: tuple[str, ...]  # the unified cgroup.procs, if clone3 could not be used
    # network "none" only: pid 1 is born in a network namespace made ahead, loopback up
    # (the zygote's); else it gets a new one and brings loopback up itself
    net_ready: bool = False
    # a parked sandbox (sandbox/parked.py): pid 1 waits on this pipe for its environment
    # (sandbox/go.py) after every step but the exec; `env` is then unused
    go_fd: int | None = None


def report(pipe: int, step: str, error: BaseException) -> None:
    text = f"error {step}: {error}".replace("\n", " ")[:2000] + "\n"
    with contextlib.suppress(OSError):
        os.write(pipe, text.encode(errors="replace"))


def contain(plan: ChildPlan, pipe: int, in_cgroup: bool) -> None:
    """Pid 1 of the new namespaces: isolate, then exec. Never returns."""
    step = "cgroups"
    env = plan.env
    try:
        namespaces.join_cgroups(plan.cgroup_tasks + (() if in_cgroup else plan.cgroup_procs))
        step = "signals"
        credentials.reset_signals()
        step = "hostname"
        namespaces.set_hostname(plan.hostname)
        if plan.network == "none" and not plan.net_ready:
            step = "loopback"
            namespaces.loopback_up()
        step = "filesystem"
        mounts.build_root(plan.mounts)
        step = "descriptors"
        keep = (pipe,) if plan.go_fd is None else (pipe, plan.go_fd)
        pipe, *go_fd = credentials.arrange_fds(plan.fds, keep)
        step = "rlimits"
        rlimits.apply(plan.rlimits)
        step = "credentials"
        credentials.drop_privileges(plan.uid, plan.gid)
        step = "cwd"
        os.chdir(plan.cwd)
        if plan.seccomp_bpf is not None:
            step = "seccomp"
            seccomp.load(plan.seccomp_bpf)  # last: after this, only exec is needed
        env = dict(plan.env)
        if go_fd:
            step = "go"
            os.write(pipe, b"parked\n")
            env = go.await_go(go_fd[0])
        step = "exec"
        os.execvpe(plan.argv[0], list(plan.argv), env)
    except BaseException as e:
        if step == "exec" and isinstance(e, FileNotFoundError):
            e = OSError(f"{plan.argv[0]}: not found (PATH={env.get('PATH', '')})")
        report(pipe, step, e)
    os._exit(127)


def launch(plan: ChildPlan, pipe: int) -> None:
    """The launcher, right after fork: create pid 1 and report its pid. Never returns."""
    try:
        libc.prctl(libc.PR_SET_DUMPABLE, 0)  # a root copy of the daemon: nobody may look in
        pid, in_cgroup = namespaces.spawn_init(plan.network, plan.cgroup_fd)
        if pid == 0:
            contain(plan, pipe, in_cgroup)
        os.write(pipe, f"pid {pid}\n".encode())
        os._exit(0)
    except BaseException as e:
        report(pipe, "namespaces", e)
    os._exit(127)

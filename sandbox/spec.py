"""The frozen sandbox spec: every field with its unit and default, checked once.

A spec describes one process tree; it knows nothing about scripts. Sizes are in
bytes, times in seconds, CPU in vCPUs (fractions allowed).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

MiB = 1024 * 1024
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")


class SandboxError(Exception):
    """A sandbox could not be started or managed; the message says why."""


@dataclass(frozen=True)
class Bind:
    """A bind mount of a host path. Read-only unless writable; always nosuid,nodev."""

    source: str  # host path (absolute); must exist
    target: str  # path inside the sandbox (absolute)
    writable: bool = False


@dataclass(frozen=True)
class Tmpfs:
    """A private tmpfs inside the sandbox (nosuid,nodev)."""

    target: str  # absolute path inside the sandbox
    size_bytes: int  # bytes; writes beyond it fail with ENOSPC


@dataclass(frozen=True)
class Rlimits:
    """Resource limits applied as both soft and hard limit."""

    core_bytes: int = 0  # no core dumps
    fsize_bytes: int = 1024 * MiB  # largest file a process may write
    nofile: int = 1024  # open file descriptors per process
    stack_bytes: int = 8 * MiB  # main thread stack


@dataclass(frozen=True)
class SandboxSpec:
    """Everything needed to start one sandboxed process tree."""

    argv: tuple[str, ...]  # argv[0] is looked up in env["PATH"] inside the sandbox
    env: Mapping[str, str]  # the whole environment: nothing is inherited
    name: str  # unique cgroup leaf name, [A-Za-z0-9_.-]
    cwd: str = "/"  # inside the sandbox
    uid: int = 65534  # unprivileged uid the tree runs as (never 0)
    gid: int = 65534  # its gid; supplementary groups are cleared
    binds: tuple[Bind, ...] = ()  # on top of the system binds (see sandbox.mounts)
    tmpfs: tuple[Tmpfs, ...] = ()  # /tmp is always there (tmp_size_bytes)
    tmp_size_bytes: int = 64 * MiB  # size of /tmp
    cpu_vcpus: float | None = None  # 0.7 -> 70 ms per 100 ms period; None = unlimited
    memory_bytes: int | None = None  # bytes, swap 0; None = unlimited
    pids_max: int | None = 256  # processes + threads; None = unlimited
    rlimits: Rlimits = field(default_factory=Rlimits)
    network: Literal["none", "host"] = "none"  # none = own namespace with loopback only
    seccomp: bool = True  # install the system call filter (sandbox.seccomp)
    pass_fds: Mapping[int, int] = field(default_factory=dict)  # child fd -> parent fd
    stdin: int | None = None  # parent fd; None = /dev/null
    stdout: int | None = None  # parent fd; None = /dev/null
    stderr: int | None = None  # parent fd; None = /dev/null
    hostname: str = "sandbox"  # in its own UTS namespace
    system_binds: bool = True  # add the read-only system paths (sandbox.mounts.system_binds)

    def __post_init__(self) -> None:
        object.__setattr__(self, "argv", tuple(self.argv))
        object.__setattr__(self, "env", MappingProxyType(dict(self.env)))
        object.__setattr__(self, "pass_fds", MappingProxyType(dict(self.pass_fds)))
        validate(self)


def _absolute(path: str, what: str) -> None:
    if not path.startswith("/") or "\0" in path or ".." in path.split("/"):
        raise ValueError(f"{what} must be an absolute path without '..': {path!r}")


def validate(spec: SandboxSpec) -> None:
    """Raise ValueError naming the first field that is out of range."""
    if not spec.argv:
        raise ValueError("argv must not be empty")
    if not _NAME.match(spec.name):
        raise ValueError(f"name must match [A-Za-z0-9_.-]{{1,100}}: {spec.name!r}")
    if spec.uid <= 0 or spec.gid <= 0:
        raise ValueError("uid and gid must be unprivileged (> 0)")
    _absolute(spec.cwd, "cwd")
    for bind in spec.binds:
        _absolute(bind.source, "bind source")
        _absolute(bind.target, "bind target")
    for tmp in spec.tmpfs:
        _absolute(tmp.target, "tmpfs target")
        if tmp.size_bytes <= 0:
            raise ValueError(f"tmpfs {tmp.target} needs a positive size")
    if spec.tmp_size_bytes <= 0:
        raise ValueError("tmp_size_bytes must be positive")
    if spec.cpu_vcpus is not None and not 0.01 <= spec.cpu_vcpus <= (os.cpu_count() or 1) * 4:
        raise ValueError(f"cpu_vcpus out of range: {spec.cpu_vcpus}")
    if spec.memory_bytes is not None and spec.memory_bytes < 4 * MiB:
        raise ValueError("memory_bytes must be at least 4 MiB")
    if spec.pids_max is not None and spec.pids_max < 1:
        raise ValueError("pids_max must be at least 1")
    if spec.network not in ("none", "host"):
        raise ValueError(f"network must be 'none' or 'host': {spec.network!r}")
    for child_fd in spec.pass_fds:
        if child_fd < 3:
            raise ValueError("pass_fds targets start at 3 (0-2 are stdin/stdout/stderr)")
    for key, value in spec.env.items():
        if "=" in key or "\0" in key or "\0" in value:
            raise ValueError(f"bad environment entry {key!r}")

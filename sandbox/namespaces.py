"""Namespaces: which ones a sandbox gets, and creating its pid 1 inside them.

The sandbox gets new mount, pid, ipc, uts and cgroup namespaces, and a new
network namespace unless network="host". It stays in the host's user namespace:
its processes are an unprivileged uid with no capabilities, and the seccomp
filter refuses creating nested user namespaces (or any other) inside.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import struct

from . import libc

BASE_FLAGS = (
    libc.CLONE_NEWNS
    | libc.CLONE_NEWPID
    | libc.CLONE_NEWIPC
    | libc.CLONE_NEWUTS
    | libc.CLONE_NEWCGROUP
)


def clone_flags(network: str) -> int:
    return BASE_FLAGS | (libc.CLONE_NEWNET if network == "none" else 0)


def spawn_init(network: str, cgroup_fd: int | None, net_ready: bool = False) -> tuple[int, bool]:
    """From the single-threaded launcher: create pid 1 of the new namespaces.

    Returns (0, _) in the new process and (its host pid, _) in the launcher; the
    flag says whether it was born in the unified cgroup `cgroup_fd` (clone3) or
    must still join it. The new process is a child of the launcher's parent
    (CLONE_PARENT).
    """
    flags = clone_flags(network)
    if net_ready:  # the caller stands in a fresh network namespace made for it
        flags &= ~libc.CLONE_NEWNET
    if cgroup_fd is not None:
        try:
            return libc.clone3_parent_into(flags, cgroup_fd), True
        except OSError as e:
            if e.errno != errno.ENOSYS:  # kernels before 5.7: join by writing below
                raise
    return libc.clone_parent(flags), False


def join_cgroups(files: tuple[str, ...]) -> None:
    """Pid 1 moves itself: "0" written to a v1 `tasks` file moves the calling thread
    (all there is) without the global lock that cgroup.procs takes."""
    for path in files:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, b"0")
        finally:
            os.close(fd)
    libc.unshare(libc.CLONE_NEWCGROUP)  # rooted at the cgroups just joined


def set_hostname(name: str) -> None:
    socket.sethostname(name)


_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1


def loopback_up() -> None:
    """Bring `lo` up in a fresh network namespace (it starts down)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s, _SIOCGIFFLAGS, req))[1]
        fcntl.ioctl(s, _SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | _IFF_UP))

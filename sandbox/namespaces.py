"""Namespaces: which ones a sandbox gets, and creating its pid 1 inside them.

The sandbox gets new mount, pid, ipc, uts and cgroup namespaces, and a new
network namespace unless network="host". It stays in the host's user namespace:
its processes are an unprivileged uid with no capabilities, and the seccomp
filter refuses creating nested user namespaces (or any other) inside.
"""

from __future__ import annotations

import fcntl
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


def spawn_init(network: str) -> int:
    """From the single-threaded launcher: create pid 1 of the new namespaces.

    Returns 0 in the new process and its (host) pid in the launcher. The new
    process is a child of the launcher's parent (CLONE_PARENT), and the cgroup
    namespace is rooted at the cgroups the launcher joined just before.
    """
    return libc.clone_parent(clone_flags(network))


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

"""The system call filter: a deny-list compiled once in the parent, loaded last in the child.

Everything not named here is allowed. Refused calls fail with EPERM (clone3 with
ENOSYS, so libc falls back to clone, where namespace flags can be inspected).
System calls of other architectures (i386, x32) kill the process.
"""

from __future__ import annotations

import contextlib
import errno
import functools
from typing import TYPE_CHECKING

from . import libc

if TYPE_CHECKING:
    import pyseccomp

# pyseccomp (and tempfile) are imported where a filter is built, in the daemon: pid 1
# only loads the compiled bytes, and the zygote it is cloned from (sandbox/zygote.py)
# stays small.

DENIED = (
    # filesystems and namespaces
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "move_mount",
    "open_tree",
    "mount_setattr",
    "unshare",
    "setns",
    # looking into or at other processes
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "kcmp",
    "pidfd_getfd",
    # kernel attack surface
    "bpf",
    "perf_event_open",
    "keyctl",
    "add_key",
    "request_key",
    "userfaultfd",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "open_by_handle_at",
    "name_to_handle_at",
    "fanotify_init",
    "lookup_dcookie",
    # the machine itself
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "reboot",
    "swapon",
    "swapoff",
    "acct",
    "quotactl",
    "quotactl_fd",
    "iopl",
    "ioperm",
    "syslog",
    "vhangup",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
)
_CLONE_NS_FLAGS = (
    libc.CLONE_NEWNS,
    libc.CLONE_NEWCGROUP,
    libc.CLONE_NEWUTS,
    libc.CLONE_NEWIPC,
    libc.CLONE_NEWUSER,
    libc.CLONE_NEWPID,
    libc.CLONE_NEWNET,
)
AF_NETLINK, AF_PACKET, AF_ALG, AF_VSOCK = 16, 17, 38, 40
NETLINK_ROUTE = 0  # getifaddrs() and AI_ADDRCONFIG need it; other netlink families are refused
TIOCSTI, TIOCLINUX = 0x5412, 0x541C


def _add_rules(f: pyseccomp.SyscallFilter) -> None:
    import pyseccomp as sc

    deny = sc.ERRNO(errno.EPERM)
    for name in DENIED:
        # A name unknown to this libseccomp is a call it cannot make: nothing to refuse.
        with contextlib.suppress(OSError, ValueError):
            f.add_rule(deny, name)
    f.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    for flag in _CLONE_NS_FLAGS:
        f.add_rule(deny, "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
    for family in (AF_PACKET, AF_ALG, AF_VSOCK):
        f.add_rule(sc.ERRNO(errno.EAFNOSUPPORT), "socket", sc.Arg(0, sc.EQ, family))
    f.add_rule(deny, "socket", sc.Arg(0, sc.EQ, AF_NETLINK), sc.Arg(2, sc.NE, NETLINK_ROUTE))
    for request in (TIOCSTI, TIOCLINUX):
        # Only the low 32 bits: the kernel truncates the request to an int.
        f.add_rule(deny, "ioctl", sc.Arg(1, sc.MASKED_EQ, 0xFFFFFFFF, request))


def build_filter() -> pyseccomp.SyscallFilter:
    import pyseccomp as sc

    f = sc.SyscallFilter(sc.ALLOW)
    f.set_attr(sc.Attr.ACT_BADARCH, sc.KILL_PROCESS)
    f.set_attr(sc.Attr.CTL_NNP, 0)  # the launcher sets no_new_privs itself
    _add_rules(f)
    return f


@functools.lru_cache(maxsize=1)
def compiled() -> bytes:
    """The filter as classic BPF, ready for libc.load_seccomp (computed once)."""
    import tempfile

    with tempfile.TemporaryFile() as out:
        build_filter().export_bpf(out)
        out.seek(0)
        return out.read()


def describe() -> str:
    """The filter in libseccomp's readable pseudo-code (for reviews and tests)."""
    import tempfile

    with tempfile.TemporaryFile(mode="w+") as out:
        build_filter().export_pfc(out)
        out.seek(0)
        return out.read()


def load(bpf: bytes) -> None:
    """In the child, after no_new_privs, just before exec."""
    libc.load_seccomp(bpf)

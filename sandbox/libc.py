"""Thin ctypes bindings for the system calls Python 3.11 lacks (x86_64 numbers).

Every wrapper raises OSError with errno on failure. These run in the forked
launcher between fork and exec, so they must not allocate locks or threads.
"""

from __future__ import annotations

import ctypes
import os

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long

# x86_64 system call numbers (asm/unistd_64.h).
SYS_CLONE = 56
SYS_CLONE3 = 435
SYS_PIVOT_ROOT = 155
SYS_CLOSE_RANGE = 436
SYS_MOUNT_SETATTR = 442
SYS_CAPSET = 126
SYS_PIDFD_SEND_SIGNAL = 424

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_PARENT = 0x00008000
CLONE_INTO_CGROUP = 0x200000000
SIGCHLD = 17

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MNT_DETACH = 2

AT_FDCWD = -100
AT_RECURSIVE = 0x8000
AT_SYMLINK_NOFOLLOW = 0x100
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_NOEXEC = 0x8

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_SECUREBITS = 28
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2


def _check(res: int) -> int:
    if res < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return res


def clone_parent(flags: int) -> int:
    """fork()-like clone: the child gets `flags` namespaces and our parent as its parent.

    With CLONE_PARENT the new process is a child of the daemon, not of the short-lived
    launcher, so the daemon can wait for it through a pidfd. Returns 0 in the child.
    Only safe in a single-threaded process (the launcher is one, right after fork).
    """
    return _check(
        _syscall(SYS_CLONE, ctypes.c_ulong(flags | CLONE_PARENT | SIGCHLD), None, None, None, None)
    )


class _CloneArgs(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_uint64)
        for name in (
            "flags",
            "pidfd",
            "child_tid",
            "parent_tid",
            "exit_signal",
            "stack",
            "stack_size",
            "tls",
            "set_tid",
            "set_tid_size",
            "cgroup",
        )
    ]


def clone3_parent_into(flags: int, cgroup_fd: int) -> int:
    """Like clone_parent, and the child is born in the cgroup v2 directory `cgroup_fd`.

    CLONE_INTO_CGROUP avoids a later write to cgroup.procs, which takes a global
    lock that can wait for an RCU grace period (many ms on a busy host).
    """
    # exit_signal must be 0 with CLONE_PARENT: the child inherits ours (SIGCHLD).
    args = _CloneArgs(flags=flags | CLONE_PARENT | CLONE_INTO_CGROUP, cgroup=cgroup_fd)
    return _check(_syscall(SYS_CLONE3, ctypes.byref(args), ctypes.c_size_t(ctypes.sizeof(args))))


def unshare(flags: int) -> None:
    _check(_libc.unshare(ctypes.c_int(flags)))


def setns(fd: int, nstype: int) -> None:
    _check(_libc.setns(ctypes.c_int(fd), ctypes.c_int(nstype)))


def mount(
    source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None
) -> None:
    def enc(s: str | None) -> bytes | None:
        return None if s is None else os.fsencode(s)

    _check(_libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)))


def umount2(target: str, flags: int) -> None:
    _check(_libc.umount2(os.fsencode(target), ctypes.c_int(flags)))


def pivot_root(new_root: str, put_old: str) -> None:
    _check(_syscall(SYS_PIVOT_ROOT, os.fsencode(new_root), os.fsencode(put_old)))


class _MountAttr(ctypes.Structure):
    _fields_ = [
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    ]


def mount_setattr(path: str, attr_set: int, recursive: bool = True) -> None:
    """Set mount flags on `path` and, with `recursive`, on every mount below it."""
    attr = _MountAttr(attr_set, 0, 0, 0)
    flags = AT_SYMLINK_NOFOLLOW | (AT_RECURSIVE if recursive else 0)
    _check(
        _syscall(
            SYS_MOUNT_SETATTR,
            ctypes.c_int(AT_FDCWD),
            os.fsencode(path),
            ctypes.c_uint(flags),
            ctypes.byref(attr),
            ctypes.c_size_t(ctypes.sizeof(attr)),
        )
    )


def close_range(first: int, last: int) -> None:
    if first <= last:
        _check(
            _syscall(SYS_CLOSE_RANGE, ctypes.c_uint(first), ctypes.c_uint(last), ctypes.c_uint(0))
        )


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    return _check(
        _libc.prctl(
            ctypes.c_int(option),
            ctypes.c_ulong(arg2),
            ctypes.c_ulong(arg3),
            ctypes.c_ulong(arg4),
            ctypes.c_ulong(arg5),
        )
    )


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def capset_none() -> None:
    """Clear the effective, permitted and inheritable capability sets."""
    header = _CapHeader(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3
    data = (_CapData * 2)()
    _check(_syscall(SYS_CAPSET, ctypes.byref(header), ctypes.byref(data)))


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def load_seccomp(bpf: bytes) -> None:
    """Install a classic-BPF seccomp program (8 bytes per instruction)."""
    buf = ctypes.create_string_buffer(bpf, len(bpf))
    prog = _SockFprog(len(bpf) // 8, ctypes.cast(buf, ctypes.c_void_p))
    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(prog))


def pidfd_send_signal(pidfd: int, sig: int) -> None:
    _check(
        _syscall(
            SYS_PIDFD_SEND_SIGNAL, ctypes.c_int(pidfd), ctypes.c_int(sig), None, ctypes.c_uint(0)
        )
    )

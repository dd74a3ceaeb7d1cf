"""Credentials: session, ids, capabilities, securebits, no_new_privs, descriptors.

Runs in the child after the filesystem is built (that needs root) and before
seccomp. The order matters and is commented where it does.
"""

from __future__ import annotations

import fcntl
import os
import signal
from collections.abc import Mapping, Sequence

from . import libc

# Lock every securebit: no root magic on exec, setuid always drops capabilities,
# no keep-caps, no ambient raise. SECBIT_NO_SETUID_FIXUP itself stays off.
_SECUREBITS = 0x01 | 0x02 | 0x08 | 0x10 | 0x20 | 0x40 | 0x80
_PR_CAPBSET_READ = 23


def _last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except OSError:
        return 40


LAST_CAP = _last_cap()  # read in the parent at import: the child's /proc may differ


def drop_privileges(uid: int, gid: int) -> None:
    """New session, no groups, the spec's ids, no capabilities of any kind."""
    os.setsid()
    for cap in range(LAST_CAP + 1):
        libc.prctl(libc.PR_CAPBSET_DROP, cap)  # needs CAP_SETPCAP: before setuid
    libc.prctl(libc.PR_SET_SECUREBITS, _SECUREBITS)
    libc.prctl(libc.PR_CAP_AMBIENT, libc.PR_CAP_AMBIENT_CLEAR_ALL)
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)  # clears permitted/effective (securebits forbid keeping them)
    libc.capset_none()  # and inheritable, explicitly
    libc.prctl(libc.PR_SET_NO_NEW_PRIVS, 1)
    # Changing credentials clears the parent-death signal, so it is set after.
    libc.prctl(libc.PR_SET_PDEATHSIG, signal.SIGKILL)
    libc.prctl(libc.PR_SET_DUMPABLE, 0)  # exec of the payload resets it to 1


def arrange_fds(fds: Mapping[int, int], keep: Sequence[int]) -> list[int]:
    """Make child fd n a copy of parent fd fds[n]; close every other fd but `keep`.

    `fds` must cover 0, 1 and 2. Sources and `keep` (close-on-exec: the handshake
    pipe, and a parked sandbox's go pipe) are first copied above every target, so no
    dup2 clobbers one still needed. Returns the new numbers of `keep`, in order.
    """
    top = max([*fds, *keep]) + 1
    kept = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, top) for fd in keep]
    moved = {t: fcntl.fcntl(s, fcntl.F_DUPFD_CLOEXEC, top) for t, s in fds.items()}
    for target, source in moved.items():
        os.dup2(source, target, inheritable=True)
    first = max(fds) + 1
    for fd in sorted(kept):
        if fd > first:
            libc.close_range(first, fd - 1)
        first = fd + 1
    libc.close_range(first, 0x7FFFFFFF)
    return kept


def reset_signals() -> None:
    """Undo what a Python parent leaves behind: ignored SIGPIPE/SIGXFSZ, masks."""
    for sig in (signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])

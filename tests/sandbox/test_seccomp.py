"""The system call filter refuses what the issue lists; other architectures are killed."""

from __future__ import annotations

import json
import signal

import pytest

from sandbox import seccomp
from tests.sandbox.conftest import run_py

pytestmark = pytest.mark.usefixtures("cgroot")

PROBES = r"""
import ctypes, errno, json, os, socket
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def sys(nr, *args):
    res = libc.syscall(ctypes.c_long(nr), *[ctypes.c_ulong(a) for a in args])
    return "ok" if res >= 0 else errno.errorcode[ctypes.get_errno()]
def sock(*args):
    try:
        socket.socket(*args).close()
        return "ok"
    except OSError as e:
        return errno.errorcode[e.errno]
buf = ctypes.create_string_buffer(256)
addr = ctypes.addressof(buf)
out = {
    "ptrace": sys(101, 0, 0, 0, 0),                        # PTRACE_TRACEME
    "process_vm_readv": sys(310, 1, addr, 1, addr, 1, 0),
    "mount": sys(165, addr, addr, addr, 0, 0),
    "umount2": sys(166, addr, 0),
    "pivot_root": sys(155, addr, addr),
    "fsopen": sys(430, addr, 0),
    "move_mount": sys(429, 0, addr, 0, addr, 0),
    "unshare_user": sys(272, 0x10000000),
    "unshare_net": sys(272, 0x40000000),
    "setns": sys(308, 0, 0),
    "clone_newuser": sys(56, 0x10000000 | 17, 0, 0, 0, 0),
    "clone3": sys(435, addr, 88),
    "bpf": sys(321, 5, addr, 72),                           # BPF_PROG_LOAD
    "perf_event_open": sys(298, addr, 0, -1 & 0xffffffff, -1 & 0xffffffff, 0),
    "keyctl": sys(250, 0, 0, 0, 0, 0),
    "add_key": sys(248, addr, addr, 0, 0, 0),
    "io_uring_setup": sys(425, 8, addr),
    "userfaultfd": sys(323, 0),
    "open_by_handle_at": sys(304, 0, addr, 0),
    "kexec_load": sys(246, 0, 0, 0, 0),
    "init_module": sys(175, addr, 0, addr),
    "reboot": sys(169, 0, 0, 0, 0),
    "swapon": sys(167, addr, 0),
    "acct": sys(163, 0),
    "iopl": sys(172, 3),
    "tiocsti": sys(16, 0, 0x5412, addr),
    "tiocsti_high_bits": sys(16, 0, 0xdead00005412, addr),
    "tioclinux": sys(16, 0, 0x541C, addr),
    "af_alg": sock(38, socket.SOCK_SEQPACKET, 0),
    "af_packet": sock(17, socket.SOCK_RAW, 0),
    "af_vsock": sock(40, socket.SOCK_STREAM, 0),
    "netlink_audit": sock(16, socket.SOCK_RAW, 9),
    "raw_inet": sock(socket.AF_INET, socket.SOCK_RAW, 1),
    "netlink_route": sock(16, socket.SOCK_RAW, 0),
    "tcp": sock(socket.AF_INET, socket.SOCK_STREAM, 0),
    "fork": "ok" if os.fork() or os._exit(0) else "",
}
print(json.dumps(out))
"""

REFUSED = [
    "ptrace",
    "process_vm_readv",
    "mount",
    "umount2",
    "pivot_root",
    "fsopen",
    "move_mount",
    "unshare_user",
    "unshare_net",
    "setns",
    "clone_newuser",
    "bpf",
    "perf_event_open",
    "keyctl",
    "add_key",
    "io_uring_setup",
    "userfaultfd",
    "open_by_handle_at",
    "kexec_load",
    "init_module",
    "reboot",
    "swapon",
    "acct",
    "iopl",
    "tiocsti",
    "tiocsti_high_bits",
    "tioclinux",
    "netlink_audit",
]


def test_dangerous_calls_are_refused(cgroot):
    r = run_py(cgroot, PROBES, pids_max=16)
    assert r.exit.code == 0, r.err
    got = json.loads(r.out)
    for name in REFUSED:
        assert got[name] == "EPERM", (name, got[name])
    assert got["clone3"] == "ENOSYS"  # so libc falls back to clone, which the filter can inspect
    assert got["af_alg"] == got["af_packet"] == got["af_vsock"] == "EAFNOSUPPORT"
    assert got["raw_inet"] == "EPERM"  # no CAP_NET_RAW
    assert got["netlink_route"] == got["tcp"] == got["fork"] == "ok"


def test_without_seccomp_capabilities_still_refuse_the_privileged_calls(cgroot):
    # Only calls that need a capability: without the filter, unshare(CLONE_NEWUSER)
    # would succeed, which is why the daemon always runs with seccomp on.
    probes = (
        PROBES.split("out = {")[0]
        + """
out = {name: sys(nr, *args) for name, nr, args in [
    ("mount", 165, (addr, addr, addr, 0, 0)), ("pivot_root", 155, (addr, addr)),
    ("setns", 308, (0, 0)), ("kexec_load", 246, (0, 0, 0, 0)), ("reboot", 169, (0, 0, 0, 0)),
    ("iopl", 172, (3,)), ("init_module", 175, (addr, 0, addr)), ("acct", 163, (0,))]}
out["raw_inet"] = sock(socket.AF_INET, socket.SOCK_RAW, 1)
print(json.dumps(out))
"""
    )
    r = run_py(cgroot, probes, pids_max=16, seccomp=False)
    assert r.exit.code == 0, r.err
    got = json.loads(r.out)
    assert "ok" not in got.values(), got  # each fails (EPERM, or an earlier check)
    assert got["raw_inet"] == got["pivot_root"] == "EPERM"


def test_x32_and_i386_system_calls_kill_the_process(cgroot):
    r = run_py(
        cgroot,
        """
        import ctypes
        libc = ctypes.CDLL(None)
        libc.syscall(ctypes.c_long(0x40000000 | 39))  # x32 getpid
        print("survived")
    """,
    )
    assert r.out == ""
    assert r.exit.signal == signal.SIGSYS, r.exit


def test_filter_text_names_the_refused_calls():
    text = seccomp.describe()
    for name in ("mount", "ptrace", "bpf", "keyctl", "io_uring_setup", "clone3", "unshare"):
        assert f'"{name}"' in text
    assert "KILL_PROCESS" in text  # bad architecture action

"""The zygote: a small launcher process that every sandbox's pid 1 is cloned from.

Creating pid 1 copies the address space of the process that clones it, page tables
and all, and exec then tears that copy down. Cloned from the daemon (through a forked
launcher, see launcher.py) that is two copies of tens of megabytes per start, which
measured 5-15 ms of a replica's start on a loaded 2-core machine. The zygote is a fresh
interpreter that imported only the modules pid 1 runs (about 15 MB), started once per
process: `start` sends it the child plan (pickled, with its fds over SCM_RIGHTS) and it clones
pid 1 with CLONE_PARENT, exactly as the forked launcher does, so pid 1 is still a child
of this process and everything after the clone (contain.contain, the handshake pipe,
the Sandbox handle) is unchanged.

Pid 1 gets its parent-death signal when the *thread* that created its parent exits
(CLONE_PARENT makes the zygote's parent its parent). So the zygote is created by a
thread of this module's own that never exits: sandboxes die with the process, never
with the thread that happened to start them first. The zygote dies with that thread too
(PR_SET_PDEATHSIG). If it dies, the next start makes a new one; a start that finds no
zygote (it could not be started) forks a launcher as before.
"""

from __future__ import annotations

import os
import pickle
import queue
import socket
import subprocess
import sys
import threading
from dataclasses import replace

from . import libc
from .contain import ChildPlan, contain, report
from .namespaces import loopback_up, spawn_init

READY_TIMEOUT_S = 30.0
_PACKAGE = os.path.dirname(os.path.abspath(__file__))
# The zygote imports only what cloning and contain need: the package's __init__ (cgroups,
# the asyncio handle, the launcher) and site would make it half as big again, and every
# clone copies its page tables and every exec tears them down (about 0.8 ms of a new
# replica's first answer: docs/performance.md). So the package is a bare module here.
_BOOT = (
    "import sys, types; package = types.ModuleType('sandbox'); "
    f"package.__path__ = [{_PACKAGE!r}]; sys.modules['sandbox'] = package; "
    "from sandbox.zygote import serve; serve()"
)
MAX_MESSAGE = 1 << 20
MAX_FDS = 64


class Zygote:
    """The daemon's side: one zygote process and the socket to it."""

    def __init__(self, process: subprocess.Popen[bytes], sock: socket.socket) -> None:
        self.process = process
        self.sock = sock
        self.lock = threading.Lock()

    def alive(self) -> bool:
        return self.process.poll() is None

    def send(self, plan: ChildPlan, pipe: int) -> bool:
        """Ask for pid 1 of `plan`; the zygote reports on `pipe` as the forked launcher
        would ("pid N", then pid 1's own report). False: nothing was sent."""
        fds: list[int] = [pipe]

        def index(fd: int) -> int:
            if fd not in fds:
                fds.append(fd)
            return fds.index(fd)

        cgroup = None if plan.cgroup_fd is None else index(plan.cgroup_fd)
        go = None if plan.go_fd is None else index(plan.go_fd)
        fds_moved = {k: index(v) for k, v in plan.fds.items()}
        moved = replace(plan, fds=fds_moved, cgroup_fd=cgroup, go_fd=go)
        data = pickle.dumps(moved, protocol=pickle.HIGHEST_PROTOCOL)
        if len(data) > MAX_MESSAGE or len(fds) > MAX_FDS:
            return False
        try:
            with self.lock:
                socket.send_fds(self.sock, [data], fds)
        except OSError:
            return False
        return True

    def stop(self) -> None:
        self.sock.close()
        self.process.kill()
        self.process.wait()


# --- the daemon's side: one zygote per process, made by a thread that never exits ----

_current: Zygote | None = None
_current_lock = threading.Lock()
_requests: queue.Queue[queue.Queue[Zygote | BaseException]] = queue.Queue()
_maker: threading.Thread | None = None


def get() -> Zygote | None:
    """The live zygote, started on first use; None when one cannot be started."""
    global _current, _maker
    with _current_lock:
        if _current is not None and _current.alive():
            return _current
        if _current is not None:
            _current.sock.close()
            _current = None
        if _maker is None or not _maker.is_alive():
            _maker = threading.Thread(target=_make_forever, name="sandbox-zygote", daemon=True)
            _maker.start()
        answer: queue.Queue[Zygote | BaseException] = queue.Queue(maxsize=1)
        _requests.put(answer)
        try:
            made = answer.get(timeout=READY_TIMEOUT_S)
        except queue.Empty:
            return None
        if isinstance(made, BaseException):
            return None
        _current = made
        return made


def _make_forever() -> None:
    """The zygotes' parent thread: it must outlive every sandbox, so it never returns."""
    while True:
        answer = _requests.get()
        try:
            answer.put(_spawn())
        except BaseException as exc:  # reported to the caller, who forks instead
            answer.put(exc)


def _spawn() -> Zygote:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        process = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _BOOT, str(theirs.fileno()), str(os.getpid())],
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,
            env={"PATH": "/usr/bin:/bin"},
            cwd="/",
        )
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    return Zygote(process, ours)


# --- the zygote's side --------------------------------------------------------------


def serve() -> None:
    """`python -I -c ... SOCKET_FD PARENT_PID`: clone a pid 1 per request until EOF."""
    sock = socket.socket(fileno=int(sys.argv[1]))
    # Close-on-exec, like every fd received below: pid 1 (cloned from here) keeps only
    # the fds its plan names (contain's arrange_fds), and nothing else survives its exec.
    sock.set_inheritable(False)
    libc.prctl(libc.PR_SET_PDEATHSIG, 9)  # SIGKILL with the thread that made us
    if os.getppid() != int(sys.argv[2]):
        os._exit(0)  # it died before the line above
    libc.prctl(libc.PR_SET_DUMPABLE, 0)  # root, and holds the plans: nobody may look in
    net = _NetworkAhead()
    while True:
        data, fds, _, _ = socket.recv_fds(sock, MAX_MESSAGE, MAX_FDS)
        if not data:
            os._exit(0)  # the daemon is gone
        for fd in fds:  # (recv_fds drops its flags argument: no MSG_CMSG_CLOEXEC)
            os.set_inheritable(fd, False)
        try:
            _clone(pickle.loads(data), fds, net)
        finally:
            for fd in fds:
                os.close(fd)
        net.prepare()  # pid 1 sets itself up meanwhile


def _clone(moved: ChildPlan, fds: list[int], net: _NetworkAhead) -> None:
    """The forked launcher's job (contain.launch), without exiting afterwards."""
    pipe = fds[0]
    cgroup = None if moved.cgroup_fd is None else fds[moved.cgroup_fd]
    go = None if moved.go_fd is None else fds[moved.go_fd]
    fds_here = {k: fds[v] for k, v in moved.fds.items()}
    plan = replace(moved, fds=fds_here, cgroup_fd=cgroup, go_fd=go)
    try:
        plan = replace(plan, net_ready=net.enter(plan.network))
        pid, in_cgroup = spawn_init(plan.network, plan.cgroup_fd, plan.net_ready)
        if pid == 0:
            contain(plan, pipe, in_cgroup)  # never returns
        os.write(pipe, f"pid {pid}\n".encode())
    except BaseException as e:
        report(pipe, "namespaces", e)


class _NetworkAhead:
    """The zygote stands in a fresh network namespace with loopback up, made after each
    clone for the next one: a sandbox with network "none" is born in it, and does not
    wait for a namespace to be created (about 1 ms) and its loopback brought up (as
    much again) on a loaded machine. Each namespace goes to one sandbox only."""

    def __init__(self) -> None:
        self.host = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        self.fresh = False
        self.prepare()

    def prepare(self) -> None:
        """Into a new namespace, unless the one we stand in was not given away."""
        if self.fresh:
            return
        try:
            libc.unshare(libc.CLONE_NEWNET)
            loopback_up()
        except OSError:
            libc.setns(self.host, libc.CLONE_NEWNET)  # pid 1 then makes its own
            return
        self.fresh = True

    def enter(self, network: str) -> bool:
        """Before a clone: True when pid 1 is to be born in the namespace we stand in
        (then given away); for network "host", back into the host's."""
        if network == "host":
            libc.setns(self.host, libc.CLONE_NEWNET)
            self.fresh = False
            return False
        given, self.fresh = self.fresh, False
        return given

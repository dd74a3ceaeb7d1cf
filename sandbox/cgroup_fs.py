"""File operations on cgroupfs: reading and writing its files, killing every process of a
cgroup, removing a cgroup's tree, and one process's memory peak (sandbox/cgroups.py)."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time

from .spec import SandboxError


class CgroupFS:
    """File operations on cgroupfs; tests substitute a plain directory."""

    def read(self, path: str) -> str:
        with open(path) as f:
            return f.read()

    def write(self, path: str, text: str) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC | os.O_CREAT, 0o644)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)

    def mkdir(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)

    def rmdir(self, path: str) -> None:
        os.rmdir(path)


def kill_cgroup(fs: CgroupFS, dirs: list[str]) -> None:
    """SIGKILL every process: cgroup.kill where present, else pid by pid (v1)."""
    for d in dirs:
        if os.path.exists(os.path.join(d, "cgroup.kill")):
            fs.write(os.path.join(d, "cgroup.kill"), "1")
            return
    for _ in range(100):  # a fork bomb may add pids while we kill; pids.max bounds it
        pids = set()
        for d in with_children(dirs):  # v1 lists only a cgroup's own members
            with contextlib.suppress(FileNotFoundError):
                pids |= {int(p) for p in fs.read(os.path.join(d, "cgroup.procs")).split()}
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.005)


def with_children(dirs: list[str]) -> list[str]:
    """`dirs` and the cgroups below them (a process's memory cgroup, process_memory)."""
    out = []
    for d in dirs:
        out.append(d)
        with contextlib.suppress(OSError):
            out += [e.path for e in os.scandir(d) if e.is_dir(follow_symlinks=False)]
    return out


class MemoryProbe:
    """The peak memory of one process's own cgroup between reset() and peak() (v1:
    writing to memory.max_usage_in_bytes resets it to the current usage).

    They run once per call on the daemon's event loop, so the file stays open: one
    pwrite and one pread each time, where opening it cost an open, a close and a
    Python file object per step (cgroupfs re-reads a file from offset 0). close()
    when the process is gone; a removed cgroup makes both say nothing (ENODEV)."""

    def __init__(self, fs: CgroupFS, path: str) -> None:
        self.fs = fs
        self.path = os.path.join(path, "memory.max_usage_in_bytes")
        self._fd = -1  # (for __del__ if the open fails)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)

    def reset(self) -> None:
        if self._fd >= 0:
            try:  # noqa: SIM105 (once per call: suppress() costs a context manager)
                os.pwrite(self._fd, b"0", 0)
            except OSError:
                pass  # the cgroup is gone with its process: peak() says None

    def peak(self) -> int | None:
        if self._fd < 0:
            return None
        try:
            return int(os.pread(self._fd, 32, 0))
        except (OSError, ValueError):
            return None

    def close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)

    def __del__(self) -> None:
        self.close()


def remove_dirs(fs: CgroupFS, dirs: list[str], timeout: float = 2.0) -> None:
    """rmdir each cgroup, waiting briefly for dying processes to leave it."""
    deadline = time.monotonic() + timeout
    for d in dirs:
        for sub in sorted(os.listdir(d)) if os.path.isdir(d) else []:
            if os.path.isdir(os.path.join(d, sub)):
                remove_dirs(fs, [os.path.join(d, sub)], timeout)
        while True:
            try:
                fs.rmdir(d)
                break
            except FileNotFoundError:
                break
            except OSError as e:
                if e.errno != errno.EBUSY or time.monotonic() > deadline:
                    raise SandboxError(f"cannot remove cgroup {d}: {e.strerror}") from e
                time.sleep(0.005)

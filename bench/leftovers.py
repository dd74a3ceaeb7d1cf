"""What a daemon leaves behind, read from /proc and the cgroup mounts only (no daemon code).

The soak and crash benches give each daemon a cgroup name of its own
(`sandbox.cgroup_name`); the daemon creates that cgroup below the cgroup it runs in,
in every hierarchy. Leftovers are the cgroups below that name and the processes
whose cgroup is at or below it, plus processes that mention the bench's temp dir
on their command line (builds, supervisors).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Leftovers", "ProcStats", "find_leftovers", "identities", "proc_stats", "survivors"]


@dataclass(frozen=True)
class ProcStats:
    rss_kib: int
    fds: int


def proc_stats(pid: int) -> ProcStats:
    """The resident set size and the number of open descriptors of `pid`."""
    rss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
    return ProcStats(rss, len(os.listdir(f"/proc/{pid}/fd")))


@dataclass(frozen=True)
class Leftovers:
    cgroups: list[str]  # cgroup directories below the daemon's root (sandboxes)
    roots: list[str]  # the daemon's root directories themselves
    processes: list[str]  # "pid cmdline" of processes in those cgroups or naming the dir

    @property
    def clean(self) -> bool:
        return not self.cgroups and not self.processes


def _cgroup_mounts() -> list[str]:
    mounts = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split(" - ", 1)
        if len(fields) == 2 and fields[1].split()[0] in ("cgroup", "cgroup2"):
            mounts.append(fields[0].split()[4])
    return mounts


def _own_cgroup_dirs(pid: int) -> list[str]:
    """Directories of `pid`'s cgroups, in every mounted hierarchy."""
    dirs = set()
    paths = [line.split(":", 2)[2] for line in Path(f"/proc/{pid}/cgroup").read_text().split()]
    for mount in _cgroup_mounts():
        for path in paths:
            candidate = os.path.join(mount, path.lstrip("/"))
            if os.path.isdir(candidate):
                dirs.add(candidate)
    return sorted(dirs)


def find_leftovers(
    cgroup_name: str, markers: tuple[str, ...], parent_pid: int | None = None
) -> Leftovers:
    """Cgroups and processes of the daemon named `cgroup_name`; `markers` are paths that
    appear on the command lines of its processes (its temp dir, its build cache). The
    daemon ran below the cgroups of `parent_pid` (this bench by default)."""
    roots, below = [], []
    for own in _own_cgroup_dirs(parent_pid or os.getpid()):
        root = os.path.join(own, cgroup_name)
        if not os.path.isdir(root):
            continue
        roots.append(root)
        for dirpath, dirnames, _ in os.walk(root):
            below += [os.path.join(dirpath, d) for d in dirnames]
    return Leftovers(sorted(below), sorted(roots), _processes(cgroup_name, markers))


def _ancestors() -> set[int]:
    pids, pid = set(), os.getpid()
    while pid > 1 and pid not in pids:
        pids.add(pid)
        pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    return pids


def _processes(cgroup_name: str, markers: tuple[str, ...]) -> list[str]:
    found = []
    mine = _ancestors()  # this bench and what started it name the same paths
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in mine:
            continue
        try:
            cgroups = Path(f"/proc/{entry}/cgroup").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue  # exited meanwhile
        in_cgroup = any(
            f"/{cgroup_name}/" in p or p.endswith(f"/{cgroup_name}") for p in cgroups.split()
        )
        if in_cgroup or any(m in cmdline for m in markers):
            found.append(f"{entry} {cmdline.strip()[:160]}")
    return found


def identities(found: Leftovers) -> set[str]:
    """Stable identities of what `found` holds: a cgroup by path and inode (a directory
    made again under the same name is another cgroup), a process by pid and start time."""
    out = set()
    for path in found.cgroups:
        try:
            out.add(f"cgroup {path} ino {os.stat(path).st_ino}")
        except OSError:
            continue
    for proc in found.processes:
        pid = proc.split(" ", 1)[0]
        try:
            start = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
        except (OSError, IndexError):
            continue
        out.add(f"process {pid} start {start} {proc.split(' ', 1)[1][:100]}")
    return out


def survivors(before: set[str], now: Leftovers) -> list[str]:
    """What of `before` (identities taken before a kill) still exists `now`."""
    return sorted(before & identities(now))

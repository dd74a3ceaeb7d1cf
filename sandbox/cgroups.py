"""One cgroup per sandbox, under a root cgroup of scriptd's own; v1 or v2 per controller.

Layout (v1 hierarchies and the unified tree alike)::

    <the cgroup this process runs in>/<root name>/<sandbox name>

Each controller is driven where the host has it: a v1 hierarchy that mounts
it, else the unified (v2) tree when the controller is available there. The
unified tree, when mounted, is always used too: cgroup.kill and cpu.stat
work there even without controllers (hybrid hosts).

cgroup v2's "no internal processes" rule: controllers can only be enabled for
the children of a cgroup that holds no process. If a v2 controller we need is
offered to our own cgroup (listed in its cgroup.controllers) but not enabled in
its cgroup.subtree_control, this process moves itself into a leaf
`<own>/<root name>.daemon` and enables the controllers in `<own>`, which with
systemd's Delegate=yes is ours to manage. On the host's root cgroup this is
never done. Nothing is ever written to a cgroup outside that subtree.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from dataclasses import dataclass

from .cgroup_fs import CgroupFS, MemoryProbe, kill_cgroup, remove_dirs, with_children
from .cgroup_layout import Layout, discover
from .spec import SandboxError

PERIOD_US = 100_000


@dataclass(frozen=True)
class Limits:
    cpu_vcpus: float | None
    memory_bytes: int | None
    pids_max: int | None


def _subtree(fs: CgroupFS, path: str, fname: str) -> set[str]:
    try:
        return {c.lstrip("+") for c in fs.read(os.path.join(path, fname)).split()}
    except FileNotFoundError:
        return set()


class CgroupRoot:
    """scriptd's root cgroup in every hierarchy it uses (one per daemon process)."""

    def __init__(self, name: str, dirs: dict[str, str], unified: str | None, fs: CgroupFS):
        self.name = name
        self.controller_dirs = dirs  # controller -> root dir (v1 or unified)
        self.unified = unified  # our root dir in the unified tree, if mounted
        self.fs = fs
        self._lock_fd: int | None = None  # flock'ed root dir (create(exclusive=True))

    @classmethod
    def create(
        cls,
        name: str = "scriptd",
        layout: Layout | None = None,
        fs: CgroupFS | None = None,
        remove_leftovers: bool = True,
        exclusive: bool = False,
    ) -> CgroupRoot:
        """Create (or reuse) the root below our own cgroups; kill and remove leftovers.

        Leftovers are sandbox cgroups of a previous run of this daemon (same name).
        With `exclusive`, the root's directory stays flock'ed while this process
        lives, and a root another live process holds is refused before anything of
        it is touched (two daemons given the same name).
        """
        layout = layout or discover()
        fs = fs or CgroupFS()
        own_unified = layout.unified_dir()
        unified = os.path.join(own_unified, name) if own_unified else None
        dirs: dict[str, str] = {}
        v2_wanted: list[str] = []
        for controller in ("cpu", "cpuacct", "memory", "pids"):
            v1 = layout.v1_dir(controller)
            if v1 is not None:
                dirs[controller] = os.path.join(v1, name)
            elif own_unified and controller != "cpuacct":
                offered = _subtree(fs, own_unified, "cgroup.controllers")
                if controller in offered:
                    v2_wanted.append(controller)
                    dirs[controller] = os.path.join(own_unified, name)
        root = cls(name, dirs, unified, fs)
        for path in root.hierarchy_dirs():
            fs.mkdir(path)
        if exclusive:
            root._lock()
        for path in root.hierarchy_dirs() if remove_leftovers else []:
            root.remove_leftovers(path)
        if v2_wanted and own_unified and unified:
            root._enable_v2(own_unified, unified, v2_wanted, layout.unified_own == "/")
        return root

    def _lock(self) -> None:
        path = self.unified or self.hierarchy_dirs()[0]
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise SandboxError(
                f"the cgroup {path} is in use by another process: give each daemon a cgroup"
                " name of its own (scriptd: sandbox.cgroup_name, or leave it unset)"
            ) from None
        self._lock_fd = fd

    def hierarchy_dirs(self) -> list[str]:
        dirs = set(self.controller_dirs.values())
        if self.unified:
            dirs.add(self.unified)
        return sorted(dirs)

    def _enable_v2(self, own: str, ours: str, wanted: list[str], own_is_root: bool) -> None:
        enabled = _subtree(self.fs, own, "cgroup.subtree_control")
        missing = [c for c in wanted if c not in enabled]
        if missing:
            if own_is_root:
                raise SandboxError(
                    f"cgroup v2 controllers {missing} are not enabled below the root cgroup and"
                    " scriptd never changes the root's subtree_control: run it in a delegated"
                    " cgroup (systemd: Delegate=yes)"
                )
            leaf = f"{ours}.daemon"
            self.fs.mkdir(leaf)
            self.fs.write(os.path.join(leaf, "cgroup.procs"), str(os.getpid()))
            try:
                self.fs.write(
                    os.path.join(own, "cgroup.subtree_control"), " ".join(f"+{c}" for c in missing)
                )
            except OSError as e:
                raise SandboxError(
                    f"cannot enable {missing} for the children of {own} ({e.strerror}). cgroup v2"
                    " forbids controllers in a cgroup that holds processes: move every process of"
                    f" {own} into a leaf, or run scriptd under systemd with Delegate=yes"
                ) from e
        self.fs.write(
            os.path.join(ours, "cgroup.subtree_control"), " ".join(f"+{c}" for c in wanted)
        )

    def remove_leftovers(self, path: str) -> None:
        """Kill and remove sandbox cgroups a previous run left behind."""
        for entry in sorted(os.listdir(path)):
            leaf = os.path.join(path, entry)
            if os.path.isdir(leaf):
                kill_cgroup(self.fs, [leaf])
                remove_dirs(self.fs, [leaf])

    def cleanup(self) -> None:
        """Remove the (empty) root cgroups: on daemon shutdown."""
        for path in self.hierarchy_dirs():
            for entry in os.listdir(path):
                if os.path.isdir(os.path.join(path, entry)):
                    kill_cgroup(self.fs, [os.path.join(path, entry)])
                    remove_dirs(self.fs, [os.path.join(path, entry)])
        remove_dirs(self.fs, self.hierarchy_dirs())
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def remove_if_empty(self) -> None:
        """Remove the root dirs unless another process still has sandboxes in them."""
        for path in self.hierarchy_dirs():
            with contextlib.suppress(OSError):
                self.fs.rmdir(path)

    def new(self, leaf: str, limits: Limits) -> SandboxCgroup:
        return SandboxCgroup.create(self, leaf, limits)


class SandboxCgroup:
    """The cgroups of one sandbox, in every hierarchy."""

    def __init__(self, root: CgroupRoot, leaf: str):
        self.fs = root.fs
        self.by_controller = {c: os.path.join(d, leaf) for c, d in root.controller_dirs.items()}
        self.unified = os.path.join(root.unified, leaf) if root.unified else None
        dirs = set(self.by_controller.values()) | ({self.unified} if self.unified else set())
        self.dirs = sorted(dirs)
        self.v2 = {c for c, d in root.controller_dirs.items() if d == root.unified}

    @classmethod
    def create(cls, root: CgroupRoot, leaf: str, limits: Limits) -> SandboxCgroup:
        cg = cls(root, leaf)
        for d in cg.dirs:
            if os.path.exists(d):
                raise SandboxError(f"cgroup {d} already exists: sandbox names must be unique")
        try:
            for d in cg.dirs:
                os.mkdir(d, 0o755)
            cg._set_limits(limits)
        except OSError as e:
            cg.remove()
            raise SandboxError(f"cgroup setup failed: {e}") from e
        return cg

    def _set(self, controller: str, v1_file: str, v2_file: str, value: str) -> None:
        d = self.by_controller.get(controller)
        if d is None:
            raise SandboxError(f"the host has no usable '{controller}' cgroup controller")
        self.fs.write(os.path.join(d, v2_file if controller in self.v2 else v1_file), value)

    def _set_limits(self, limits: Limits) -> None:
        if limits.cpu_vcpus is not None:
            quota = max(1000, round(limits.cpu_vcpus * PERIOD_US))
            if "cpu" in self.v2:
                self._set("cpu", "", "cpu.max", f"{quota} {PERIOD_US}")
            else:
                self._set("cpu", "cpu.cfs_period_us", "", str(PERIOD_US))
                self._set("cpu", "cpu.cfs_quota_us", "", str(quota))
        if limits.memory_bytes is not None:
            self._set("memory", "memory.limit_in_bytes", "memory.max", str(limits.memory_bytes))
            mem = self.by_controller["memory"]
            # Swap 0: v1 limits memory+swap to the same value, v2 limits swap itself.
            swap = (
                ("memory.swap.max", "0")
                if "memory" in self.v2
                else ("memory.memsw.limit_in_bytes", str(limits.memory_bytes))
            )
            if "memory" in self.v2 or os.path.exists(os.path.join(mem, swap[0])):
                self.fs.write(os.path.join(mem, swap[0]), swap[1])
        if limits.pids_max is not None:
            self._set("pids", "pids.max", "pids.max", str(limits.pids_max))

    def procs_files(self) -> list[str]:
        return [os.path.join(d, "cgroup.procs") for d in self.dirs]

    def v1_tasks_files(self) -> tuple[str, ...]:
        """v1 hierarchies pid 1 joins itself (see namespaces.join_cgroups)."""
        return tuple(os.path.join(d, "tasks") for d in self.dirs if d != self.unified)

    def unified_procs_file(self) -> tuple[str, ...]:
        return (os.path.join(self.unified, "cgroup.procs"),) if self.unified else ()

    def _read(self, controller: str | None, v1_file: str, v2_file: str) -> str | None:
        if controller is None:
            d, name = self.unified, v2_file
        else:
            d = self.by_controller.get(controller)
            name = v2_file if controller in self.v2 else v1_file
        if d is None:
            return None
        try:
            return self.fs.read(os.path.join(d, name))
        except OSError:
            return None

    @staticmethod
    def _key(text: str | None, key: str) -> int | None:
        for line in (text or "").splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] == key:
                return int(parts[1])
        return None

    def cpu_seconds(self) -> float:
        usec = self._key(self._read(None, "", "cpu.stat"), "usage_usec")
        if usec is not None:
            return usec / 1e6
        ns = self._read("cpuacct", "cpuacct.usage", "")
        return int(ns) / 1e9 if ns else 0.0

    def memory(self) -> tuple[int, int]:
        """(bytes now, peak bytes)."""
        now = self._read("memory", "memory.usage_in_bytes", "memory.current")
        peak = self._read("memory", "memory.max_usage_in_bytes", "memory.peak")
        cur = int(now) if now else 0
        return cur, int(peak) if peak else cur

    def oom_kills(self) -> int:
        text = self._read("memory", "memory.oom_control", "memory.events")
        kills = self._key(text, "oom_kill") or 0
        mem = self.by_controller.get("memory")
        if mem is None or "memory" in self.v2:  # v2 counts its children's kills itself
            return kills
        for child in with_children([mem])[1:]:  # v1 counts a kill in the victim's cgroup
            with contextlib.suppress(OSError):
                kills += self._key(self.fs.read(os.path.join(child, "memory.oom_control")),
                                   "oom_kill") or 0  # fmt: skip
        return kills

    def process_memory(self, name: str, pid: int) -> MemoryProbe | None:
        """Move `pid` (a process of this sandbox) into a memory cgroup of its own,
        `name` below this one, whose peak can be reset and read per unit of work; the
        sandbox's limit still holds for it (hierarchical). v1 only: on v2 this cgroup
        holds the sandbox's pid 1, and the "no internal processes" rule forbids memory
        children beside it, so None (and on any failure: the caller goes without)."""
        mem = self.by_controller.get("memory")
        if mem is None or "memory" in self.v2:
            return None
        child = os.path.join(mem, name)
        try:
            self.fs.mkdir(child)
            self.fs.write(os.path.join(child, "cgroup.procs"), str(pid))
            return MemoryProbe(self.fs, child)
        except OSError:
            return None

    def rejoin(self, pid: int) -> bool:
        """Write `pid` (pid 1 of this sandbox, already a member) to the v1 memory
        cgroup's tasks file: a move that changes nothing but takes the kernel's attach
        lock (sandbox/move_warmer.py). False where no move is ever made (no v1 memory
        cgroup: process_memory measures nothing) or the write failed."""
        mem = self.by_controller.get("memory")
        if mem is None or "memory" in self.v2:
            return False
        try:
            self.fs.write(os.path.join(mem, "tasks"), str(pid))
        except OSError:
            return False
        return True

    def kill(self) -> None:
        kill_cgroup(self.fs, self.dirs)

    def remove(self) -> None:
        remove_dirs(self.fs, self.dirs)

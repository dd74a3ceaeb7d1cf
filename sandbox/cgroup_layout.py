"""Where each cgroup controller lives on this host, and where scriptd may create cgroups.

Read from /proc/self/mountinfo (which hierarchies are mounted, v1 or v2) and
/proc/self/cgroup (the cgroup this process runs in, per hierarchy). scriptd
creates cgroups only below the cgroup it runs in, in every hierarchy.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

CONTROLLERS = ("cpu", "cpuacct", "memory", "pids")


@dataclass(frozen=True)
class Layout:
    """v1 hierarchies by controller, the unified (v2) tree, and our own cgroups."""

    v1_mounts: dict[str, str] = field(default_factory=dict)  # controller -> mount point
    v1_own: dict[str, str] = field(default_factory=dict)  # controller -> our cgroup path
    unified_mount: str | None = None  # cgroup2 mount point
    unified_own: str = "/"  # our cgroup in the unified tree

    def v1_dir(self, controller: str) -> str | None:
        """Our own cgroup directory in the v1 hierarchy holding `controller`."""
        mount = self.v1_mounts.get(controller)
        if mount is None:
            return None
        return os.path.join(mount, self.v1_own.get(controller, "/").lstrip("/"))

    def unified_dir(self) -> str | None:
        if self.unified_mount is None:
            return None
        return os.path.join(self.unified_mount, self.unified_own.lstrip("/")).rstrip("/") or "/"


def parse(mountinfo: str, proc_cgroup: str) -> Layout:
    v1_mounts: dict[str, str] = {}
    unified = None
    for line in mountinfo.splitlines():
        left, _, right = line.partition(" - ")
        fields, rfields = left.split(), right.split()
        if len(rfields) < 3 or len(fields) < 5:
            continue
        fstype, options = rfields[0], rfields[2].split(",")
        mount_point = fields[4].replace("\\040", " ")
        if fstype == "cgroup2" and unified is None:
            unified = mount_point
        elif fstype == "cgroup":
            for opt in options:
                if opt in CONTROLLERS:
                    v1_mounts.setdefault(opt, mount_point)
    v1_own: dict[str, str] = {}
    unified_own = "/"
    for line in proc_cgroup.splitlines():
        hier_id, controllers, path = line.split(":", 2)
        if hier_id == "0" and controllers == "":
            unified_own = path
        for c in controllers.split(","):
            v1_own[c] = path
    return Layout(v1_mounts, v1_own, unified, unified_own)


def discover() -> Layout:
    with open("/proc/self/mountinfo") as m, open("/proc/self/cgroup") as c:
        return parse(m.read(), c.read())

"""What a parked spare sandbox costs (serving/spare.py): one per Deployed version.

Parks the spare of a real version (SandboxLauncher.park, as a pool does) several times
and reads, for each: the memory charged to its cgroup (memory.usage_in_bytes in v1,
memory.current in v2), and its pid 1's RSS, PSS and private memory
(/proc/PID/smaps_rollup: a copy of the zygote, whose pages it shares until written).
Run as root:  .venv/bin/python -m bench.spare_memory [--count 5]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import sandbox
from bench.invoke_replica import _target, make_venv
from daemon.serving.launcher import LaunchSettings, SandboxLauncher
from daemon.serving.workspace_image import release

KIB = 1024
MIB = 1024 * 1024


def cgroup_bytes(cgroup: sandbox.SandboxCgroup) -> int | None:
    memory = cgroup.by_controller.get("memory")
    if memory is None:
        return None
    name = "memory.current" if "memory" in cgroup.v2 else "memory.usage_in_bytes"
    return int(Path(memory, name).read_text())


def rollup(pid: int) -> dict[str, int]:
    """Rss, Pss and Private_Clean + Private_Dirty of a process, in bytes."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, value = line.split(":", 1)
        fields[key] = int(value.split()[0]) * KIB
    private = fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)
    return {"rss": fields["Rss"], "pss": fields["Pss"], "private": private}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=5)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("run as root: spares are real sandboxes", file=sys.stderr)
        return 2
    rows: list[dict[str, int]] = []
    with tempfile.TemporaryDirectory(prefix="scriptd-spare-") as tmp:
        root = Path(tmp)
        target = _target(root, make_venv(root))
        cgroups = sandbox.CgroupRoot.create("scriptd-bench-spare")
        launcher = SandboxLauncher(target, replace(LaunchSettings(), uid_base=300_000), cgroups)
        try:
            for i in range(args.count):
                ours, theirs = socket.socketpair()
                r, w = os.pipe()
                with ours, theirs:
                    spare = launcher.park(f"spare-{i}", theirs.fileno(), w)
                    os.close(w)
                    try:
                        charged = cgroup_bytes(spare.parked.cgroup)
                        rows.append({**rollup(spare.parked.pid), "cgroup": charged or 0})
                    finally:
                        launcher.discard(spare)
                        os.close(r)
        finally:
            cgroups.cleanup()
            release(target.workspace_dir)
    med = statistics.median
    print(f"a parked spare, medians of {args.count} (load avg {os.getloadavg()[0]:.1f}):")
    for key, label in (("cgroup", "charged to its cgroup"), ("rss", "pid 1 RSS"),
                       ("pss", "pid 1 PSS"), ("private", "pid 1 private")):  # fmt: skip
        print(f"  {label:24} {med(r[key] for r in rows) / MIB:7.2f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())

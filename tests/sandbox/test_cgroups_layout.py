"""cgroup discovery and the v2 path, against a fake cgroupfs directory (no root needed)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from sandbox import CgroupRoot, SandboxError
from sandbox.cgroup_layout import Layout, parse
from sandbox.cgroups import CgroupFS, Limits

HYBRID_MOUNTINFO = """\
30 24 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw
33 30 0:29 / /sys/fs/cgroup/cpu rw,relatime shared:13 - cgroup cgroup rw,cpu
34 30 0:30 / /sys/fs/cgroup/cpuacct rw,relatime shared:14 - cgroup cgroup rw,cpuacct
35 30 0:31 / /sys/fs/cgroup/memory rw,relatime shared:15 - cgroup cgroup rw,memory
36 30 0:32 / /sys/fs/cgroup/pids rw,relatime shared:16 - cgroup cgroup rw,pids
"""
HYBRID_CGROUP = "8:pids:/\n4:memory:/process_api/abc\n2:cpuacct:/\n1:cpu:/\n0::/\n"
V2_MOUNTINFO = "25 20 0:22 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
V2_CGROUP = "0::/system.slice/scriptd.service\n"


def test_hybrid_layout_uses_v1_controllers_below_our_own_cgroups():
    layout = parse(HYBRID_MOUNTINFO, HYBRID_CGROUP)
    assert layout.v1_dir("memory") == "/sys/fs/cgroup/memory/process_api/abc"
    assert layout.v1_dir("pids") == "/sys/fs/cgroup/pids/"
    assert layout.unified_dir() == "/sys/fs/cgroup/unified"


def test_pure_v2_layout():
    layout = parse(V2_MOUNTINFO, V2_CGROUP)
    assert layout.v1_mounts == {}
    assert layout.unified_dir() == "/sys/fs/cgroup/system.slice/scriptd.service"


def test_real_host_layout_is_below_our_own_cgroups():
    from sandbox.cgroup_layout import discover

    layout = discover()
    with open("/proc/self/cgroup") as f:
        own = {
            c: p for line in f for _, cs, p in [line.strip().split(":", 2)] for c in cs.split(",")
        }
    for controller, mount in layout.v1_mounts.items():
        assert layout.v1_dir(controller) == os.path.join(mount, own[controller].lstrip("/"))


class FakeFS(CgroupFS):
    """A plain directory standing in for cgroupfs: rmdir also drops the control files."""

    def rmdir(self, path: str) -> None:
        for entry in os.listdir(path):
            if os.path.isfile(os.path.join(path, entry)):
                os.unlink(os.path.join(path, entry))
        os.rmdir(path)


def _fake_v2(tmp_path: Path, subtree: str = "", own: str = "/system.slice/scriptd.service"):
    mount = tmp_path / "cgroup"
    service = mount / own.lstrip("/")
    service.mkdir(parents=True)
    (service / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (service / "cgroup.subtree_control").write_text(subtree)
    (service / "cgroup.procs").write_text(f"{os.getpid()}\n")
    layout = Layout(unified_mount=str(mount), unified_own=own)
    return layout, service


def test_v2_enables_controllers_respecting_no_internal_processes(tmp_path):
    layout, service = _fake_v2(tmp_path)
    root = CgroupRoot.create("scriptd", layout=layout, fs=FakeFS())
    ours = service / "scriptd"
    # The daemon left its own cgroup for a leaf before controllers were enabled there.
    assert (service / "scriptd.daemon" / "cgroup.procs").read_text() == str(os.getpid())
    assert (service / "cgroup.subtree_control").read_text() == "+cpu +memory +pids"
    assert (ours / "cgroup.subtree_control").read_text() == "+cpu +memory +pids"
    assert root.controller_dirs == {c: str(ours) for c in ("cpu", "memory", "pids")}

    cg = root.new("box1", Limits(cpu_vcpus=0.7, memory_bytes=64 << 20, pids_max=50))
    leaf = ours / "box1"
    assert (leaf / "cpu.max").read_text() == "70000 100000"
    assert (leaf / "memory.max").read_text() == str(64 << 20)
    assert (leaf / "memory.swap.max").read_text() == "0"
    assert (leaf / "pids.max").read_text() == "50"
    assert cg.procs_files() == [str(leaf / "cgroup.procs")]

    (leaf / "cpu.stat").write_text("usage_usec 1500000\nuser_usec 1000000\n")
    (leaf / "memory.current").write_text("1048576\n")
    (leaf / "memory.peak").write_text("2097152\n")
    (leaf / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    assert cg.cpu_seconds() == 1.5
    assert cg.memory() == (1 << 20, 2 << 20)
    assert cg.oom_kills() == 1

    (leaf / "cgroup.kill").write_text("")
    cg.kill()
    assert (leaf / "cgroup.kill").read_text() == "1"
    cg.remove()
    assert not leaf.exists()


def test_v2_with_controllers_already_delegated_does_not_move_the_daemon(tmp_path):
    layout, service = _fake_v2(tmp_path, subtree="cpu memory pids\n")
    CgroupRoot.create("scriptd", layout=layout, fs=FakeFS())
    assert not (service / "scriptd.daemon").exists()
    assert (service / "cgroup.subtree_control").read_text() == "cpu memory pids\n"


def test_v2_never_touches_the_root_cgroup(tmp_path):
    layout, service = _fake_v2(tmp_path, own="/")
    with pytest.raises(SandboxError, match="Delegate=yes"):
        CgroupRoot.create("scriptd", layout=layout, fs=FakeFS())
    assert (service / "cgroup.subtree_control").read_text() == ""


def test_leftovers_of_a_previous_run_are_removed(tmp_path):
    layout, service = _fake_v2(tmp_path, subtree="cpu memory pids")
    old = service / "scriptd" / "old-box"
    old.mkdir(parents=True)
    (old / "cgroup.kill").write_text("")
    (old / "pids.max").write_text("5")
    CgroupRoot.create("scriptd", layout=layout, fs=FakeFS())
    assert not old.exists()
    shutil.rmtree(tmp_path / "cgroup")

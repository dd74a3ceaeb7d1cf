"""A process of a sandbox measured in a memory cgroup of its own (cgroup v1): found by
its pid inside the sandbox, its peak reset and read per unit of work, its OOM kill
counted with the sandbox's."""

from __future__ import annotations

import os
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from sandbox import Bind, SandboxSpec, start
from tests.sandbox.conftest import ENV, PY, PY_BINDS, unique_name

pytestmark = pytest.mark.usefixtures("cgroot")
MIB = 1 << 20

# pid 1 forks a child that allocates N MiB each time a file /x/go-K appears (and says
# /x/done-K), while pid 1 names the child's pid (in the sandbox) in /x/pid.
PAYLOAD = textwrap.dedent("""
    import os, time
    child = os.fork()
    if child == 0:
        for k, mb in enumerate((80, 1, 400)):
            while not os.path.exists(f"/x/go-{k}"):
                time.sleep(0.01)
            data = bytearray(mb << 20)
            for i in range(0, len(data), 4096):
                data[i] = 1
            del data
            open(f"/x/done-{k}", "w").close()
        time.sleep(60)
    with open("/x/pid.tmp", "w") as f:
        f.write(str(child))
    os.rename("/x/pid.tmp", "/x/pid")
    os.waitpid(child, 0)
""")


def wait_for(path: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)


def test_a_process_peak_is_reset_and_read_and_its_oom_counted(cgroot) -> None:
    if "memory" in cgroot.controller_dirs and cgroot.controller_dirs["memory"] == cgroot.unified:
        pytest.skip("per-process memory cgroups need the memory controller on cgroup v1")
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        shared = Path(tmp)
        os.chmod(shared, 0o777)
        spec = SandboxSpec(
            argv=(PY, "-I", "-c", PAYLOAD), env=ENV, name=unique_name(), memory_bytes=300 * MIB,
            binds=(*PY_BINDS, Bind(str(shared), "/x", writable=True)),
        )  # fmt: skip
        box = start(spec, cgroot)
        try:
            wait_for(shared / "pid")
            probe = box.track_memory("child", int((shared / "pid").read_text()))
            assert probe is not None
            peaks = []
            for k in range(2):  # 80 MiB, then 1 MiB: each peak is its own
                probe.reset()
                (shared / f"go-{k}").touch()
                wait_for(shared / f"done-{k}")
                peaks.append(probe.peak())
            assert peaks[0] is not None and peaks[0] >= 80 * MIB, peaks
            assert peaks[1] is not None and peaks[1] < 40 * MIB, peaks
            probe.close()  # its file was kept open: closed now, it says nothing more
            assert probe.peak() is None
            assert box.usage().oom_kills == 0
            (shared / "go-2").touch()  # 400 MiB: over the sandbox's 300 MiB
            exit = box.wait_blocking(30)
            assert exit is not None and box.usage().oom_kills >= 1
        finally:
            box.kill()
            box.wait_blocking(10)
            box.cleanup()
    assert box.track_memory("again", 1) is None  # gone: nothing to find

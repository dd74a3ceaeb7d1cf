"""Pid 1 is cloned from the zygote, a small process of its own, and is still our child."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from typing import IO

import pytest

from sandbox import SandboxSpec, start, zygote
from tests.sandbox.conftest import ENV, PY, PY_BINDS, unique_name

pytestmark = pytest.mark.usefixtures("cgroot")
LIST_FDS = "import os; print(sorted(int(f) for f in os.listdir('/proc/self/fd')))"


def _spec(code: str, out: int | None = None) -> SandboxSpec:
    return SandboxSpec(
        argv=(PY, "-I", "-S", "-c", code), env=ENV, name=unique_name(), binds=PY_BINDS, stdout=out
    )


def _text(f: IO[str]) -> str:
    f.seek(0)
    return f.read()


def _ppid(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def test_pid_1_comes_from_the_zygote_with_only_its_own_fds(cgroot, tmp_path) -> None:
    with open(tmp_path / "out", "w+") as out:
        box = start(_spec(LIST_FDS, out.fileno()), cgroot)
        z = zygote.get()
        assert z is not None and z.alive() and _ppid(z.process.pid) == os.getpid()
        assert _ppid(box.pid) == os.getpid()  # CLONE_PARENT: ours to wait for
        exit = box.wait_blocking(30)
        box.cleanup()
        assert exit is not None and exit.code == 0, exit
        out.seek(0)
        assert out.read().strip() == "[0, 1, 2, 3]"  # 3: listdir's own


def test_a_dead_zygote_is_replaced_and_sandboxes_outlive_their_starting_thread(
    cgroot, tmp_path
) -> None:
    first = zygote.get()
    assert first is not None
    first.process.kill()
    first.process.wait()
    boxes = []
    sleeper = _spec("import time; time.sleep(30)")
    starter = threading.Thread(target=lambda: boxes.append(start(sleeper, cgroot)))
    starter.start()
    starter.join()
    box = boxes[0]
    try:
        again = zygote.get()
        assert again is not None and again is not first and again.alive()
        assert box.wait_blocking(0.5) is None  # the thread that started it is gone
    finally:
        box.kill()
        box.wait_blocking(10)
        box.cleanup()


NET = """
import os, socket, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
socket.create_connection(s.getsockname(), timeout=2).close()  # loopback is up
print(os.stat("/proc/self/ns/net").st_ino, flush=True)
time.sleep(60)
"""


def test_each_sandbox_gets_a_network_namespace_of_its_own(cgroot, tmp_path) -> None:
    """The zygote makes the next one ahead: never the host's, never one given before
    (all alive at once, so that no namespace number is reused)."""
    outs = [open(tmp_path / f"out{n}", "w+") for n in range(3)]  # noqa: SIM115
    boxes = [start(_spec(NET, out.fileno()), cgroot) for out in outs]
    try:
        deadline = time.monotonic() + 30
        while not all(_text(o).endswith("\n") for o in outs):
            assert time.monotonic() < deadline, "the sandboxes never said their namespace"
            time.sleep(0.02)
        inodes = {int(_text(o)) for o in outs}
        assert len(inodes) == 3 and os.stat("/proc/self/ns/net").st_ino not in inodes
    finally:
        for box in boxes:
            box.kill()
            box.wait_blocking(10)
            box.cleanup()
        for out in outs:
            out.close()


def test_the_zygote_imports_only_what_pid_1_runs() -> None:
    """Every clone copies the zygote's page tables: neither the package's __init__ (the
    asyncio handle, cgroups), nor site, nor libseccomp's bindings are loaded there."""
    show = zygote._BOOT.replace("serve()", "print(' '.join(sorted(sys.modules)))")
    argv = [sys.executable, "-I", "-S", "-c", show]
    loaded = set(subprocess.run(argv, capture_output=True, text=True, check=True).stdout.split())
    assert {"sandbox.zygote", "sandbox.contain", "sandbox.mounts"} <= loaded
    assert not loaded & {"asyncio", "site", "pyseccomp", "sandbox.handle", "sandbox.cgroups"}

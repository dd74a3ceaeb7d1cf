"""The cgroup attach lock kept warm while a sandbox expects a move (sandbox/move_warmer.py):
the warmer's loop on its own, then a real sandbox whose pid 1 is rejoined to its own
memory cgroup until the expected moves are made or it is gone."""

from __future__ import annotations

import os
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from sandbox import Bind, CgroupRoot, SandboxSpec, start
from sandbox.move_warmer import QUICK_S, WARMER, MoveWarmer
from tests.sandbox.conftest import ENV, PY, PY_BINDS, unique_name

MIB = 1 << 20


def wait_until(check: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


class Counter:
    def __init__(self, answer: bool = True) -> None:
        self.calls = 0
        self.answer = answer
        self.seen = threading.Event()

    def __call__(self) -> bool:
        self.calls += 1
        self.seen.set()
        return self.answer


def test_the_warmer_repeats_until_done_or_the_deadline() -> None:
    warmer = MoveWarmer(period_s=0.001)
    refused, kept, short = Counter(answer=False), Counter(), Counter()
    warmer.want("refused", 60, refused)
    warmer.want("kept", 60, kept)
    warmer.want("short", 0.05, short)
    wait_until(lambda: kept.calls >= 5)
    # One write keeps the kernel's (global) lock warm for all: the first wanted is made.
    assert refused.calls == 1  # False: its sandbox is gone, never asked again
    assert short.calls == 0
    wait_until(lambda: not warmer.wants("short"))  # past its deadline
    assert warmer.warming
    warmer.done("kept")
    wait_until(lambda: not warmer.warming)
    calls = kept.calls
    time.sleep(0.02)
    assert kept.calls <= calls + 1  # the write in flight when done came, no more
    again = Counter()
    warmer.want("again", 60, again)  # the thread, idle, wakes for a new want
    assert again.seen.wait(10)
    warmer.done("again")


def test_a_move_is_quick_only_right_after_a_write_that_kept_the_lock_warm() -> None:
    warmer = MoveWarmer(period_s=0.001)
    assert not warmer.quick()  # nothing written yet
    refused = Counter(answer=False)
    warmer.want("refused", 60, refused)
    assert refused.seen.wait(10)
    assert not warmer.quick()  # that write was not made
    kept = Counter()
    warmer.want("kept", 60, kept)
    wait_until(warmer.quick)
    warmer.done("kept")
    wait_until(lambda: not warmer.warming)
    time.sleep(QUICK_S)
    assert not warmer.quick()  # the lock may have gone cold since the last write


# pid 1 forks two children that sleep, and names their pids (in the sandbox) in /x/pids.
PAYLOAD = textwrap.dedent("""
    import os, time
    kids = []
    for _ in range(2):
        pid = os.fork()
        if pid == 0:
            time.sleep(60)
            os._exit(0)
        kids.append(pid)
    with open("/x/pids.tmp", "w") as f:
        f.write(" ".join(map(str, kids)))
    os.rename("/x/pids.tmp", "/x/pids")
    time.sleep(60)
""")


def memory_cgroup(pid: int) -> str:
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        if ":memory:" in line:
            return line.split(":", 2)[2]
    raise AssertionError(f"pid {pid} has no memory cgroup")


def test_a_sandbox_keeps_moves_warm_until_its_moves_are_made(cgroot: CgroupRoot) -> None:
    if "memory" not in cgroot.controller_dirs or cgroot.controller_dirs["memory"] == cgroot.unified:
        pytest.skip("per-process memory cgroups need the memory controller on cgroup v1")
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        shared = Path(tmp)
        os.chmod(shared, 0o777)
        spec = SandboxSpec(
            argv=(PY, "-I", "-c", PAYLOAD), env=ENV, name=unique_name(), memory_bytes=256 * MIB,
            binds=(*PY_BINDS, Bind(str(shared), "/x", writable=True)),
        )  # fmt: skip
        box = start(spec, cgroot)
        try:
            home = memory_cgroup(box.pid)
            box.expect_moves(2, 60)
            wait_until(lambda: (shared / "pids").exists())
            assert WARMER.wants(box)
            first, second = map(int, (shared / "pids").read_text().split())
            wait_until(box.move_is_quick)  # the warmer's writes are made
            assert box.track_memory("one", first) is not None
            assert WARMER.wants(box)  # one more move is expected
            assert box.track_memory("two", second) is not None
            assert not WARMER.wants(box)
            assert memory_cgroup(box.pid) == home  # the warm writes moved pid 1 nowhere
            box.expect_moves(1, 60)  # a move that never comes: warmth ends with the sandbox
            box.kill()
            box.wait_blocking(10)
            box.cleanup()
            assert not WARMER.wants(box)
        finally:
            box.kill()
            box.wait_blocking(10)
            box.cleanup()

"""A sandbox parked before its exec: released with a fresh environment, or discarded."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import replace

import pytest

from sandbox import SandboxError, SandboxSpec, park
from sandbox.go import GoError, decode, encode
from sandbox.launcher import _Handshake
from tests.sandbox.conftest import ENV, PY, PY_BINDS, unique_name

pytestmark = pytest.mark.usefixtures("cgroot")
SHOW = "import os, sys; print(os.environ.get('TOKEN'), sorted(os.listdir('/proc/self/fd')))"


def _spec(code: str, out: int | None = None) -> SandboxSpec:
    return SandboxSpec(
        argv=(PY, "-I", "-S", "-c", code), env={}, name=unique_name(), binds=PY_BINDS, stdout=out
    )


def _gone(pid: int, cgroup_dirs: list[str], seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not os.path.exists(f"/proc/{pid}") and not any(map(os.path.exists, cgroup_dirs)):
            return True
        time.sleep(0.02)
    return False


def test_release_execs_with_the_environment_sent_then(cgroot, tmp_path) -> None:
    with open(tmp_path / "out", "w+") as out:
        parked = park(_spec(SHOW, out.fileno()), cgroot)
        assert parked.alive()
        box = parked.release({**ENV, "TOKEN": "fresh"})
        exit = box.wait_blocking(30)
        box.cleanup()
        assert exit is not None and exit.code == 0, exit
        out.seek(0)
        assert out.read().split() == ["fresh", "['0',", "'1',", "'2',", "'3']"]


def test_discard_leaves_no_process_or_cgroup(cgroot) -> None:
    parked = park(_spec("pass"), cgroot)
    dirs = list(parked.cgroup.dirs)
    parked.discard()
    parked.discard()  # idempotent
    assert _gone(parked.pid, dirs)


def test_a_spare_killed_from_outside_is_seen_dead_and_refuses_release(cgroot) -> None:
    parked = park(_spec("pass"), cgroot)
    dirs = list(parked.cgroup.dirs)
    os.kill(parked.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while parked.alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not parked.alive()
    with pytest.raises(SandboxError):
        parked.release(ENV)
    assert _gone(parked.pid, dirs)


def test_a_bad_environment_is_refused_and_discards() -> None:
    with pytest.raises(GoError):
        encode({"A=B": "x"})
    with pytest.raises(GoError):
        encode({"A": "x\0y"})
    assert decode(encode({"A": "1", "B": "x=y"})) == {"A": "1", "B": "x=y"}
    for bad in (b"", b"go 3\nA=", b"go 2\n=1", b"nope\n"):
        with pytest.raises(GoError):
            decode(bad)


def test_a_failed_exec_or_a_bad_environment_discards_the_sandbox(cgroot) -> None:
    missing = park(replace(_spec("pass"), argv=("/no/such/binary",)), cgroot)
    with pytest.raises(SandboxError, match="not found"):
        missing.release(ENV)
    assert _gone(missing.pid, list(missing.cgroup.dirs))
    refused = park(_spec("pass"), cgroot)
    with pytest.raises(SandboxError, match="bad environment"):
        refused.release({"A=B": "x"})
    assert _gone(refused.pid, list(refused.cgroup.dirs))


def test_pid_1s_lines_may_come_before_the_launchers() -> None:
    """Pid 1 runs as soon as it is cloned: its "parked" can reach the pipe before the
    launcher's "pid N" (a race seen under load, which left a start waiting 30 s)."""
    r, w = os.pipe()
    try:
        os.write(w, b"parked\npid 42\n")
        handshake = _Handshake(r)
        assert handshake.init_pid() == 42
        assert handshake.parked() == []
        os.write(w, b"error exec: gone\n")
        os.close(w)
        w = -1
        assert handshake.errors() == ["exec: gone"]
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)

"""Resource limits hold against hostile payloads, and the host stays unaffected."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from sandbox import SandboxSpec, start
from tests.sandbox.conftest import ENV, PY, PY_BINDS, run, run_py, unique_name

pytestmark = pytest.mark.usefixtures("cgroot")


def _procs(dirs: list[str]) -> set[int]:
    pids: set[int] = set()
    for d in dirs:
        try:
            with open(os.path.join(d, "cgroup.procs")) as f:
                pids |= {int(p) for p in f.read().split()}
        except FileNotFoundError:
            pass
    return pids


def test_fork_bomb_is_stopped_by_pids(cgroot):
    # pid 1 waits with builtins only: a `sleep` would need a fork of its own, which
    # fails while the bomb still fills pids.max (on a busy host it can), and dash
    # exits on a failed fork.
    wait = "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done"
    r = run(
        cgroot,
        ("sh", "-c", f"bomb() {{ bomb | bomb & }}; bomb; {wait}; echo survived"),
        pids_max=32,
        timeout=20,
    )
    assert "survived" in r.out, r.err  # pid 1 outlived its bomb; pids.max held it
    assert r.exit.code == 0
    assert subprocess.run(["true"]).returncode == 0  # the host can still fork


def test_fork_bomb_sees_eagain_at_the_limit(cgroot):
    r = run_py(
        cgroot,
        """
        import os, errno, time
        children = 0
        while True:
            try:
                if os.fork() == 0:
                    time.sleep(30)
                    os._exit(0)
                children += 1
            except OSError as e:
                print(errno.errorcode[e.errno], children)
                break
    """,
        pids_max=20,
    )
    assert r.exit.code == 0, r.err
    code, children = r.out.split()
    assert code == "EAGAIN" and int(children) == 19  # pid 1 + 19 children = pids.max


def test_thread_bomb_is_stopped_by_pids(cgroot):
    r = run_py(
        cgroot,
        """
        import threading, time
        n = 0
        try:
            while True:
                threading.Thread(target=time.sleep, args=(30,), daemon=True).start()
                n += 1
        except RuntimeError:
            print("stopped", n, flush=True)
        import os; os._exit(0)
    """,
        pids_max=24,
    )
    assert r.exit.code == 0, r.err
    word, n = r.out.split()
    assert word == "stopped" and int(n) < 24


def test_memory_bomb_is_reported_as_out_of_memory(cgroot):
    r = run_py(cgroot, "x = bytearray(256 << 20); print('allocated')", memory_bytes=64 << 20)
    assert r.out == ""
    assert r.exit.oom and r.exit.signal == signal.SIGKILL
    assert r.exit.reason == "out of memory"
    assert r.exit.usage is not None and r.exit.usage.oom_kills >= 1
    assert r.exit.usage.memory_peak_bytes <= 64 << 20


def test_oom_of_a_child_is_counted_while_pid_1_survives(cgroot):
    r = run_py(
        cgroot,
        """
        import subprocess, sys
        rc = subprocess.run([sys.executable, "-c", "x = bytearray(256 << 20)"]).returncode
        print(rc)
    """,
        memory_bytes=64 << 20,
    )
    assert r.exit.code == 0 and r.out.strip() == "-9"
    assert r.exit.oom and r.exit.reason == "out of memory"


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def test_half_a_vcpu_gets_half_a_cpu(cgroot):
    """The quota caps the spinner at half a CPU; as a floor it must get about what an
    unconfined spinner beside it gets, up to that half (a busy host gives less to both)."""
    with tempfile.TemporaryFile() as out:
        spec = SandboxSpec(
            argv=(PY, "-c", "while True: pass"),
            binds=PY_BINDS,
            env=ENV,
            name=unique_name(),
            cpu_vcpus=0.5,
            stdout=out.fileno(),
        )
        box = start(spec, cgroot)
        free = subprocess.Popen([PY, "-c", "while True: pass"])
        try:
            time.sleep(0.3)  # let the interpreters start
            cpu0, free0, t0 = box.usage().cpu_seconds, _cpu_seconds(free.pid), time.monotonic()
            time.sleep(2.0)
            elapsed = time.monotonic() - t0
            share = (box.usage().cpu_seconds - cpu0) / elapsed
            free_share = (_cpu_seconds(free.pid) - free0) / elapsed
        finally:
            free.kill()
            free.wait()
            box.cleanup()
    assert share <= 0.625, share  # 0.5 vCPU + 25 %
    # The floor is loose: on a host whose cores are all busy, a quota's 100 ms periods
    # and a 2 s window leave the capped spinner somewhat less than its neighbour (seen
    # once below 0.75 of it under load); a starved sandbox would be far below either.
    assert share >= 0.5 * min(0.5, free_share), (share, free_share)


def test_cgroup_files_hold_the_limits(cgroot):
    spec = SandboxSpec(
        argv=("sleep", "30"),
        env=ENV,
        name=unique_name(),
        cpu_vcpus=0.7,
        memory_bytes=300 << 20,
        pids_max=77,
    )
    box = start(spec, cgroot)
    try:
        cg = box.cgroup

        def read(controller: str, v1: str, v2: str) -> str:
            d = cg.by_controller[controller]
            with open(os.path.join(d, v2 if controller in cg.v2 else v1)) as f:
                return f.read().strip()

        cpu = read("cpu", "cpu.cfs_quota_us", "cpu.max")
        assert cpu in ("70000", "70000 100000")
        assert read("memory", "memory.limit_in_bytes", "memory.max") == str(300 << 20)
        assert read("pids", "pids.max", "pids.max") == "77"
        assert box.pid in _procs(cg.dirs)
    finally:
        box.cleanup()
    assert not any(os.path.exists(d) for d in cg.dirs)


def test_tmp_fills_up_at_its_size(cgroot):
    r = run_py(
        cgroot,
        """
        import errno
        written = 0
        try:
            with open("/tmp/fill", "wb") as f:
                while True:
                    written += f.write(b"x" * 65536)
                    f.flush()
        except OSError as e:
            print(errno.errorcode[e.errno], written)
    """,
        tmp_size_bytes=2 << 20,
    )
    assert r.exit.code == 0, r.err
    code, written = r.out.split()
    assert code == "ENOSPC" and int(written) <= 2 << 20


@pytest.mark.parametrize(
    "payload",
    [
        "while :; do :; done",
        "sleep 1000",
        # double-forked, setsid'd, ignoring SIGTERM/SIGHUP: still gone
        "(setsid sh -c 'trap \"\" TERM HUP; sleep 1000 & sleep 1000' &) ; sleep 1000",
    ],
)
def test_time_limit_kills_every_descendant(cgroot, payload):
    spec = SandboxSpec(argv=("sh", "-c", payload), env=ENV, name=unique_name())
    box = start(spec, cgroot)
    try:
        ex = box.wait_blocking(0.5)
        assert ex is None
        seen = _procs(box.cgroup.dirs)
        assert box.pid in seen
        box.kill()
        ex = box.wait_blocking(10)
        assert ex is not None and ex.killed and ex.reason == "killed on request"
        assert _procs(box.cgroup.dirs) == set()
        for pid in seen:
            assert not os.path.exists(f"/proc/{pid}"), pid
    finally:
        box.cleanup()

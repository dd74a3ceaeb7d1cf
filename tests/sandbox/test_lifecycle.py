"""Starting, waiting, killing and cleaning up: handshake errors, threads, the event loop."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from sandbox import Bind, CgroupRoot, SandboxError, SandboxSpec, remove_tree, start
from tests.sandbox.conftest import ENV, PY, PY_BINDS, run, unique_name

pytestmark = pytest.mark.usefixtures("cgroot")


def _leaves(root: CgroupRoot) -> list[str]:
    return [
        e for d in root.hierarchy_dirs() for e in os.listdir(d) if os.path.isdir(os.path.join(d, e))
    ]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"argv": ("no-such-command",)}, "exec: no-such-command: not found"),
        ({"argv": ("true",), "cwd": "/nowhere"}, "cwd: [Errno 2]"),
        (
            {"argv": ("true",), "binds": (Bind("/etc/hosts", "/usr/new/hosts"),)},
            "filesystem: mount point /usr/new/hosts does not exist inside the bind above it",
        ),
    ],
)
def test_failures_before_exec_raise_with_the_reason(cgroot, fields, message):
    with pytest.raises(SandboxError) as err:
        start(SandboxSpec(env=ENV, name=unique_name(), **fields), cgroot)
    assert message in str(err.value)
    assert _leaves(cgroot) == []  # its cgroups are gone too


def test_exit_codes_and_signals_are_classified(cgroot):
    r = run(cgroot, ("sh", "-c", "exit 3"))
    assert (r.exit.code, r.exit.signal, r.exit.oom, r.exit.killed) == (3, None, False, False)
    assert r.exit.reason == "exit code 3"
    r = run(cgroot, ("sleep", "30"), timeout=0.3)
    assert r.exit.killed and r.exit.signal == signal.SIGKILL and r.exit.code is None


async def test_wait_does_not_block_the_event_loop(cgroot):
    box = start(SandboxSpec(argv=("sleep", "0.5"), env=ENV, name=unique_name()), cgroot)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.02)
            ticks += 1

    ticker = asyncio.create_task(tick())
    try:
        ex, again = await asyncio.wait_for(asyncio.gather(box.wait(), box.wait()), 10)
        assert again is ex  # two waiters, one exit
    finally:
        ticker.cancel()
        box.cleanup()
    assert ex.code == 0
    assert ticks >= 10  # the loop kept running while the sandbox slept


async def test_output_flood_does_not_deadlock_the_caller(cgroot):
    r_fd, w_fd = os.pipe()
    size = 32 << 20
    box = start(
        SandboxSpec(
            argv=("head", "-c", str(size), "/dev/zero"), env=ENV, name=unique_name(), stdout=w_fd
        ),
        cgroot,
    )
    os.close(w_fd)
    loop = asyncio.get_running_loop()
    os.set_blocking(r_fd, False)
    received = 0
    done = loop.create_future()

    def drain() -> None:
        nonlocal received
        try:
            while chunk := os.read(r_fd, 1 << 16):
                received += len(chunk)
            loop.remove_reader(r_fd)
            done.set_result(None)
        except BlockingIOError:
            pass

    loop.add_reader(r_fd, drain)
    try:
        ex, _ = await asyncio.wait_for(asyncio.gather(box.wait(), done), 60)
    finally:
        loop.remove_reader(r_fd)
        os.close(r_fd)
        box.cleanup()
    assert ex.code == 0 and received == size


def test_many_threads_start_sandboxes_at_once(cgroot):
    results: list[object] = []

    def one(i: int) -> None:
        try:
            results.append(run(cgroot, ("sh", "-c", f"exit {i}")).exit.code)
        except Exception as e:
            results.append(e)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == list(range(8))  # type: ignore[type-var]


DAEMON = """
import os, sys, time
sys.path.insert(0, {repo!r})
from sandbox import CgroupRoot, SandboxSpec, start
root = CgroupRoot.create({root!r})
box = start(SandboxSpec(argv=("sleep", "1000"), env={{"PATH": "/usr/bin:/bin"}}, name="orphan"),
            root)
print(box.pid, flush=True)
time.sleep(1000)
"""


def test_sandboxes_die_with_the_daemon_and_leftovers_go_at_start(tmp_path):
    from tests.conftest import require_root

    require_root()
    name = f"scriptd-test-{os.getpid()}-crash"
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    daemon = subprocess.Popen(
        [sys.executable, "-c", DAEMON.format(repo=repo, root=name)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert daemon.stdout is not None
        pid = int(daemon.stdout.readline())
        assert os.path.exists(f"/proc/{pid}")
    finally:
        daemon.kill()
        daemon.wait()
    deadline = time.monotonic() + 5
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not os.path.exists(f"/proc/{pid}")  # parent-death signal
    root = CgroupRoot.create(name)  # a restarted daemon finds the leftover cgroup
    try:
        assert _leaves(root) == []
    finally:
        root.cleanup()
    assert not any(os.path.exists(d) for d in root.hierarchy_dirs())


def test_symlinks_planted_in_a_writable_bind_are_not_followed_on_cleanup(cgroot, tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep").write_text("precious")
    ws = tmp_path / "ws"
    ws.mkdir()
    os.chown(ws, 65534, 65534)
    script = textwrap.dedent(f"""
        mkdir /ws/d && ln -s {victim} /ws/evil && ln -s {victim}/keep /ws/d/evil-file \
        && ln -s / /ws/root
    """)
    r = run(cgroot, ("sh", "-c", script), binds=(Bind(str(ws), "/ws", writable=True),))
    assert r.exit.code == 0, r.err
    assert os.path.islink(ws / "evil")
    remove_tree(str(ws))
    assert not ws.exists()
    assert (victim / "keep").read_text() == "precious"


def test_cli_reports_how_it_ended():
    from tests.conftest import require_root

    require_root()
    cli = [sys.executable, "-m", "sandbox", "run"]
    ok = subprocess.run(
        [*cli, "--cpu", "0.5", "--memory", "64M", "--", "sh", "-c", "echo hi"],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0 and ok.stdout == "hi\n"
    assert "sandbox: exit code 0" in ok.stderr and "cpu" in ok.stderr
    slow = subprocess.run(
        [*cli, "--timeout", "0.5", "--", "sh", "-c", "sleep 100 & sleep 100"],
        capture_output=True,
        text=True,
    )
    assert slow.returncode == 124 and "sandbox: timeout" in slow.stderr
    oom = subprocess.run(
        [
            *cli,
            "--memory",
            "32M",
            *(f"--ro={b.source}" for b in PY_BINDS),
            "--",
            PY,
            "-c",
            "x = bytearray(1 << 28)",
        ],
        capture_output=True,
        text=True,
    )
    assert oom.returncode == 137 and "sandbox: out of memory" in oom.stderr
    bad = subprocess.run([*cli, "--", "no-such-command"], capture_output=True, text=True)
    assert bad.returncode == 125 and "not found" in bad.stderr


async def test_daemon_style_start_in_threads_and_wait_on_the_loop(cgroot):
    specs = [
        SandboxSpec(argv=("sh", "-c", f"sleep 0.2; exit {i}"), env=ENV, name=unique_name())
        for i in range(6)
    ]
    boxes = await asyncio.gather(*(asyncio.to_thread(start, s, cgroot) for s in specs))
    try:
        exits = await asyncio.wait_for(asyncio.gather(*(b.wait() for b in boxes)), 20)
    finally:
        for b in boxes:
            b.cleanup()
    assert [e.code for e in exits] == list(range(6))

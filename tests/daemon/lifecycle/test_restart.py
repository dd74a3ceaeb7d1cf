"""Crash and restart: SIGKILL during a deploy, then the reconciliation at start.

A slow `uv` (config key build.uv pointing at a wrapper that sleeps before it
execs the real uv) keeps the deploy in its building phase long enough to kill
the daemon there.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.daemon.build_tools import build_python, copy_uv, tool_folder, write_tool
from tests.helpers import DaemonProcess, create_key, make_zip, start_daemon

SLOW_UV = """#!{python}
import os, sys, time
time.sleep({seconds})
os.execv({uv!r}, [{uv!r}, *sys.argv[1:]])
"""


def make_slow_uv(folder: Path, seconds: float) -> Path:
    text = SLOW_UV.format(python=build_python(), uv=copy_uv(folder), seconds=seconds)
    return write_tool(folder, f"slow-uv-{seconds}", text)


def fresh_project(main: str = "def f():\n    return 1\n") -> bytes:
    """A project whose environment no other test has built (so it really builds)."""
    return make_zip({"main.py": main, "requirements.txt": f"# {uuid.uuid4()}\n"})


@pytest.fixture
def tools() -> Iterator[Path]:
    with tool_folder() as folder:
        yield folder


@pytest.fixture
def slow_uv(tools: Path) -> Path:
    return make_slow_uv(tools, 30)


def pids_running(marker: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmd:
            found.append(int(pid))
    return found


def tool_running(marker: str) -> bool:
    """True once the build tool itself runs: the one process named by `marker` that
    is no longer root (the wrappers before it in the chain name it too)."""
    for pid in pids_running(marker):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        uids = next(line for line in status.splitlines() if line.startswith("Uid:"))
        if uids.split()[1] != "0":
            return True
    return False


def wait_for_tool(marker: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not tool_running(marker):
        assert time.monotonic() < deadline, "the build tool never started"
        time.sleep(0.05)


def test_sigkill_during_deploy_is_reconciled_as_interrupted(
    tmp_path: Path, slow_uv: Path, build_cache: Path
) -> None:
    config: dict[str, Any] = {"build": {"uv": str(slow_uv)}}
    daemon = start_daemon(tmp_path / "d", config, build_cache)
    try:
        admin = daemon.client()
        admin.create("crashy", fresh_project(), deploy=True)
        admin.wait_phase("crashy", "building")
        # Killed once the tool runs, not while its wrappers start: util-linux 2.38's
        # unshare leaves a window of a few instructions there that only the next
        # start's sweep of the build cgroups covers (daemon/build/cgroup.py).
        wait_for_tool(str(slow_uv))
        daemon.kill()
        deadline = time.monotonic() + 10  # the kernel kills the build's pid namespace
        while pids_running(str(slow_uv)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pids_running(str(slow_uv)) == [], "the build outlived the daemon"
        daemon.start()
        script = daemon.client().script("crashy")
        assert script["status"] == "Deployment Failed"
        assert script["deployment"]["failure_reason"] == "interrupted"
        assert script["deployment"]["ended_at"] is not None
        # and it can be deployed again once the tool is fast
    finally:
        daemon.stop()
    fast = start_daemon(tmp_path / "d", {}, build_cache)
    try:
        fast.client().action("crashy", "deploy")
        assert fast.client().wait_status("crashy")["status"] == "Deployed"
    finally:
        fast.stop()


def test_sigterm_during_deploy_exits_cleanly(daemon_with_slow_uv: DaemonProcess) -> None:
    d = daemon_with_slow_uv
    d.client().create("termy", fresh_project(), deploy=True)
    d.client().wait_phase("termy", "building")
    t0 = time.monotonic()
    assert d.stop() == 0
    assert time.monotonic() - t0 < 10
    assert not d.socket.exists()
    d.start()
    script = d.client().script("termy")
    assert script["status"] == "Deployment Failed"
    assert script["deployment"]["failure_reason"] == "interrupted"


def test_redeploy_interrupted_keeps_old_version(daemon_with_slow_uv: DaemonProcess) -> None:
    d = daemon_with_slow_uv
    # first deploy with the slow tool: wait for it (the sleep is short here)
    d.client().create("keep", fresh_project(), deploy=True)
    assert d.client().wait_status("keep")["status"] == "Deployed"
    body = {"archive_id": d.client().upload(fresh_project("def g():\n    return 2\n"))}
    d.client().action("keep", "redeploy", body)
    d.client().wait_phase("keep", "building")
    d.kill()
    d.start()
    script = d.client().script("keep")
    assert script["status"] == "Deployed" and script["current_version"] == 1
    assert script["functions"] == ["f"]
    assert script["deployment"]["failure_reason"] == "interrupted"


@pytest.fixture
def daemon_with_slow_uv(tmp_path: Path, tools: Path, build_cache: Path) -> Any:
    slow = make_slow_uv(tools, 3)
    d = start_daemon(tmp_path / "s", {"build": {"uv": str(slow)}}, build_cache)
    try:
        yield d
    finally:
        d.stop()


def test_one_script_that_cannot_restart_stops_neither_the_daemon_nor_the_others(
    daemon: DaemonProcess,
) -> None:
    """The version folder and the project archive of one script are removed by hand
    while the daemon is down (without the folder alone it would unpack the archive
    again): its restart fails (recorded on the script), the other script serves again."""
    admin = daemon.client()
    admin.create("fine", make_zip({"main.py": "def f():\n    return 'fine'\n"}), deploy=True)
    admin.create("broken", make_zip({"main.py": "def f():\n    return 'broken'\n"}), deploy=True)
    assert admin.wait_status("fine")["status"] == admin.wait_status("broken")["status"]
    daemon.stop()
    mains = daemon.state_dir.glob("scripts/*/versions/1/src/main.py")
    broken = next(p for p in mains if "'broken'" in p.read_text())
    shutil.rmtree(broken.parent.parent)  # versions/1: the source and the build log
    for archive in daemon.state_dir.glob("archives/*"):
        with zipfile.ZipFile(archive) as project:
            if b"'broken'" in project.read("main.py"):
                archive.unlink()
    daemon.start()
    admin = daemon.client()
    key = create_key(admin, "fine")
    assert daemon.gateway(key).call("fine", "f", {}).json() == {"result": "fine"}
    script = admin.script("broken")
    assert script["status"] == "Deployed"  # an operator undeploys or redeploys it
    assert script["deployment"]["failure_reason"].startswith("replicas failing: ")
    events = [e for e in admin.history("broken")["events"] if e["kind"] == "restart_failed"]
    assert len(events) == 1 and events[0]["detail"]["reason"], events
    assert not [e for e in admin.history("fine")["events"] if e["kind"] == "restart_failed"]

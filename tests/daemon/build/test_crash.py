"""Builds die with the daemon: a SIGKILL of the daemon during a build whose tool has
left a detached process behind (its own session, a double fork) leaves nothing of
the build alive, and the next start finds no build cgroup left in its root."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any

from daemon.config.daemon_config import Config
from sandbox.cgroup_layout import discover
from tests.conftest import require_root
from tests.daemon.build_tools import build_python, copy_uv, tool_folder, write_tool
from tests.daemon.lifecycle.test_restart import fresh_project, pids_running
from tests.helpers import start_daemon

# A uv that first leaves a process of its own behind, out of its session and no
# longer its child, then sleeps before it execs the real uv.
ESCAPING_UV = """#!{python}
import os, sys, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv({python!r}, [{python!r}, "-c", "import time; time.sleep(300)", {marker!r}])
    os._exit(0)
time.sleep(60)
os.execv({uv!r}, [{uv!r}, *sys.argv[1:]])
"""


def wait_until_gone(marker: str, timeout: float = 10) -> list[int]:
    deadline = time.monotonic() + timeout
    while (left := pids_running(marker)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def build_cgroups(cgroup_name: str) -> list[str]:
    """The build cgroups below the daemon's root in the unified tree (the daemon runs
    in the test's own cgroup, which it inherits)."""
    unified = discover().unified_dir()
    assert unified is not None, "no unified cgroup tree"
    root = Path(unified) / cgroup_name
    return sorted(p.name for p in root.glob("build-*")) if root.is_dir() else []


def test_nothing_of_a_build_survives_a_sigkill_of_the_daemon(
    tmp_path: Path, build_cache: Path
) -> None:
    require_root()
    marker = f"scriptd-escaped-{uuid.uuid4()}"
    with tool_folder() as tools:
        python = build_python()
        text = ESCAPING_UV.format(python=python, uv=copy_uv(tools), marker=marker)
        uv = write_tool(tools, "escaping-uv", text)
        config: dict[str, Any] = {"build": {"uv": str(uv)}}
        daemon = start_daemon(tmp_path / "d", config, build_cache, derived_cgroup=True)
        cgroup_name = Config(state_dir=daemon.state_dir).cgroup_root_name  # kept over restarts
        try:
            daemon.client().create("crashy", fresh_project(), deploy=True)
            daemon.client().wait_phase("crashy", "building")
            deadline = time.monotonic() + 30
            while not pids_running(marker) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert pids_running(marker), "the tool never started its detached process"
            assert build_cgroups(cgroup_name), "the build runs outside a build cgroup"
            daemon.kill()
            assert wait_until_gone(marker) == [], "a process of the build outlived the daemon"
            assert wait_until_gone(str(uv)) == [], "the build tool outlived the daemon"
            daemon.start()
            assert build_cgroups(cgroup_name) == []
            assert pids_running(marker) == [] and pids_running(str(uv)) == []
            script = daemon.client().script("crashy")
            assert script["deployment"]["failure_reason"] == "interrupted"
        finally:
            daemon.stop()
            for pid in pids_running(marker):  # only if the test failed: ours to end
                os.kill(pid, 9)

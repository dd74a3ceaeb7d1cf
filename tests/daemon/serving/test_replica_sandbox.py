"""Replicas in real sandboxes (root): the spec a version gets, and the call outcomes that
need the cgroup (out of memory) or the isolation (uid, workspace, env)."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from daemon.config.profiles import DEFAULT_PROFILES
from daemon.serving.call_errors import FunctionError, OutOfMemory, Timeout, WorkerCrashed
from daemon.serving.launcher import (
    APP_DIR,
    RUNTIMES_DIR,
    LaunchSettings,
    SandboxLauncher,
    workers_for,
)
from daemon.serving.replica_runner import ReplicaRunner, RunnerSettings
from daemon.serving.target import RunnerError, RunTarget
from daemon.serving.worker import Worker
from sandbox.handle import child_host_pid
from sandbox.move_warmer import WARMER
from tests.conftest import require, require_root
from tests.daemon.replica_support import (
    BROKEN_PY,
    FAST_POOL,
    UVLOOP_WARNING,
    event_loop_policy,  # noqa: F401
    write_project,
)

pytestmark = UVLOOP_WARNING

MiB = 1024 * 1024
SMALL = replace(DEFAULT_PROFILES[0], name="small", vcpus=0.5, memory_bytes=160 * MiB)
UV = Path(sys.executable).parent / "uv"


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A relocatable venv like the builder's, on the interpreter running the tests."""
    path = tmp_path_factory.mktemp("env") / "venv"
    base = os.path.realpath(sys.executable)
    subprocess.run(
        [str(UV), "venv", "--quiet", "--relocatable", "--python", base, str(path)], check=True
    )
    return path


def make_target(
    tmp_path: Path, venv: Path, text: str | None = None, *, version: int = 1, timeout_s: int = 5
) -> RunTarget:
    src = write_project(tmp_path, text) if text else write_project(tmp_path)
    return RunTarget(
        script_id=4242,
        script="sbx",
        version=version,
        language="python",
        runtime_version="3.11",
        runtime_path=os.path.realpath(sys.executable),
        source_dir=src,
        env_dir=venv,
        workspace_dir=tmp_path / "workspace",
        env={"GREETING": "hello"},
        timeout_s=timeout_s,
        functions=(),
        min_replicas=1,
        max_replicas=1,
        cpu_target=75,
        profile=SMALL,
    )


def test_spec_of_a_python_version(tmp_path: Path, venv: Path) -> None:
    t = make_target(tmp_path, venv)
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    settings = LaunchSettings(uploads_dir=uploads)
    launcher = SandboxLauncher(t, settings, root=None)  # type: ignore[arg-type]
    spec = launcher.spec("sbx-v1-r1", control_fd=9)
    assert spec.argv[:4] == ("/venv/bin/python", "-I", "-S", "/opt/scriptd/runtimes/supervisor.py")
    assert "--workers" in spec.argv and spec.argv[spec.argv.index("--workers") + 1] == "1"
    targets = {b.target: b for b in spec.binds}
    assert targets[APP_DIR].source == str(t.source_dir) and not targets[APP_DIR].writable
    assert targets["/venv"].source == str(venv) and not targets["/venv"].writable
    assert targets["/workspace"].writable
    assert targets["/uploads"].source == str(uploads) and not targets["/uploads"].writable
    assert targets["/opt/scriptd/runtimes"].source == str(RUNTIMES_DIR)
    assert spec.env["GREETING"] == "hello"
    assert spec.env["WORKSPACE_DIR"] == "/workspace" and spec.env["UPLOADS_DIR"] == "/uploads"
    assert spec.uid == spec.gid == 200_000 + 4242
    assert spec.cpu_vcpus == 0.5 and spec.memory_bytes == 160 * MiB
    assert dict(spec.pass_fds) == {3: 9}
    assert workers_for(0.7) == 1 and workers_for(3.5) == 3


@pytest.fixture(scope="module")
def cgroot() -> Iterator[object]:
    require_root()
    require(os.path.exists("/proc/self/ns/pid"), "needs namespaces")
    from sandbox import CgroupRoot

    root = CgroupRoot.create(f"scriptd-dtest-{os.getpid()}")
    yield root
    root.cleanup()


@pytest.fixture
async def runner(cgroot: object) -> AsyncIterator[ReplicaRunner]:
    # The tests' interpreter stands in for the catalogue Python of Node supervisors.
    launch = LaunchSettings(supervisor_python=os.path.realpath(sys.executable))
    settings = RunnerSettings(launch=launch, pool=FAST_POOL)
    r = ReplicaRunner(settings, cgroot)  # type: ignore[arg-type]
    yield r
    await r.close()


async def test_sandboxed_calls(tmp_path: Path, venv: Path, runner: ReplicaRunner) -> None:
    t = make_target(tmp_path, venv, timeout_s=1)
    t0 = time.monotonic()
    await runner.start(t)
    print(f"replica start to ready: {(time.monotonic() - t0) * 1000:.0f} ms")
    assert (await runner.call("sbx", "add", {"a": 2, "b": 3})).value == 5
    (replica,) = runner._serving["sbx"].pool.ready
    box = getattr(replica.process, "_box", replica.process)  # under _Released with egress
    assert not WARMER.wants(box)  # its worker was moved: the move's warmth ended with it
    # the worker, not pid 1, is the kernel's victim past the memory limit
    (worker,) = replica.workers.values()
    worker_pid = child_host_pid(box.pid, worker.pid)
    assert worker_pid is not None
    assert Path(f"/proc/{worker_pid}/oom_score_adj").read_text().strip() == "500"
    assert int(Path(f"/proc/{box.pid}/oom_score_adj").read_text()) < 500
    assert (await runner.call("sbx", "env", {"name": "GREETING"})).value == "hello"
    assert (await runner.call("sbx", "env", {"name": "PATH"})).value.startswith("/usr")
    assert (await runner.call("sbx", "write_workspace", {"text": "kept"})).value == "kept"
    assert (t.workspace_dir / "note.txt").stat().st_uid == 200_000 + 4242
    with pytest.raises(FunctionError):
        await runner.call("sbx", "boom", {})
    with pytest.raises(Timeout):  # the worker is killed; its replacement's move kept quick
        await runner.call("sbx", "spin", {})
    assert (await runner.call("sbx", "add", {"a": 2, "b": 2})).value == 4
    # The replacement served before its move ended; the move still comes, and ends warmth.
    v1 = "memory" in box.cgroup.by_controller and "memory" not in box.cgroup.v2
    workers = list(replica.workers.values())
    await _until(lambda: not WARMER.wants(box) and (not v1 or all(_measured(w) for w in workers)))
    with pytest.raises(WorkerCrashed, match="code 7"):
        await runner.call("sbx", "die", {"code": 7})
    assert (await runner.call("sbx", "add", {"a": 1, "b": 1})).value == 2


def _measured(worker: Worker) -> bool:
    """In a memory cgroup of its own (from its next call on, when moved during one)."""
    return worker.memory is not None or worker.next_memory is not None


async def _until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_out_of_memory_is_named(tmp_path: Path, venv: Path, runner: ReplicaRunner) -> None:
    await runner.start(make_target(tmp_path, venv))
    with pytest.raises(OutOfMemory) as info:
        await runner.call("sbx", "hog", {"mb": 400})
    assert "out of memory" in info.value.message and "160 MiB" in info.value.message
    assert info.value.status == "oom"
    assert (await runner.call("sbx", "add", {"a": 1, "b": 1})).value == 2


async def test_load_error_fails_the_deploy(
    tmp_path: Path, venv: Path, runner: ReplicaRunner
) -> None:
    with pytest.raises(RunnerError) as info:
        await runner.start(make_target(tmp_path, venv, BROKEN_PY))
    assert "RuntimeError: cannot start: missing setting" in str(info.value)
    assert "main.py" in str(info.value)


async def test_killed_replica_is_replaced(
    tmp_path: Path, venv: Path, runner: ReplicaRunner
) -> None:
    await runner.start(make_target(tmp_path, venv))
    pool = runner._serving["sbx"].pool
    victim = next(iter(pool.ready))
    t0 = time.monotonic()
    victim.kill()
    async with asyncio.timeout(10):
        while not (pool.ready and victim not in pool.ready):
            await asyncio.sleep(0.01)
    print(f"respawn after kill: {(time.monotonic() - t0) * 1000:.0f} ms")
    assert (await runner.call("sbx", "add", {"a": 1, "b": 1})).value == 2


MAIN_JS = """
'use strict';
function add({ a, b }) { return a + b; }
async function env({ name }) { return process.env[name] ?? null; }
function boom() { throw new TypeError('bad input'); }
module.exports = { add, env, boom };
"""


async def test_sandboxed_javascript(tmp_path: Path, runner: ReplicaRunner) -> None:
    node = shutil.which("node")
    require(node is not None, "needs node")
    src = tmp_path / "js"
    src.mkdir()
    (src / "main.js").write_text(MAIN_JS)
    env_dir = tmp_path / "jsenv"
    (env_dir / "node_modules").mkdir(parents=True)
    t = replace(
        make_target(tmp_path, env_dir),
        language="javascript",
        runtime_path=os.path.realpath(node or ""),
        source_dir=src,
    )
    await runner.start(t)
    assert (await runner.call("sbx", "add", {"a": 2, "b": 3})).value == 5
    (replica,) = runner._serving["sbx"].pool.ready
    box = getattr(replica.process, "_box", replica.process)  # under _Released with egress
    assert not WARMER.wants(box)  # its worker was moved: the move's warmth ended with it
    assert (await runner.call("sbx", "env", {"name": "GREETING"})).value == "hello"
    with pytest.raises(FunctionError) as info:
        await runner.call("sbx", "boom", {})
    assert info.value.error_type == "TypeError"


async def test_dev_runner_without_sandbox(tmp_path: Path, venv: Path) -> None:
    runner = ReplicaRunner.without_sandbox(RunnerSettings(pool=FAST_POOL))
    t = make_target(tmp_path, venv)
    try:
        await runner.start(t)
        assert (await runner.call("sbx", "add", {"a": 2, "b": 3})).value == 5
        ws = (await runner.call("sbx", "env", {"name": "WORKSPACE_DIR"})).value
        assert ws == str(t.workspace_dir)
        assert (await runner.call("sbx", "env", {"name": "GREETING"})).value == "hello"
    finally:
        await runner.close()

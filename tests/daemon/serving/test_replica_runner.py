"""daemon.serving.replica_runner: deploy, the redeploy switch under load, undeploy, failures
(real supervisor as plain processes; the sandboxed path is in test_replica_sandbox.py)."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import pytest

from daemon.config.profiles import DEFAULT_PROFILES
from daemon.serving.call_errors import CallError, Unavailable
from daemon.serving.plain_launcher import PlainLauncher
from daemon.serving.replica_runner import ReplicaRunner, RunnerSettings
from daemon.serving.target import RunnerError, RunTarget
from tests.daemon.replica_support import (
    BROKEN_PY,
    FAST_POOL,
    UVLOOP_WARNING,
    event_loop_policy,  # noqa: F401
    write_project,
)

pytestmark = UVLOOP_WARNING

VERSIONED = """
VERSION = {n}


def version():
    return VERSION


def sleep_version(s):
    import time
    time.sleep(s)
    return VERSION
"""


def target(src: Path, version: int, timeout_s: int = 10, replicas: int = 1) -> RunTarget:
    return RunTarget(
        script_id=1,
        script="demo",
        version=version,
        language="python",
        runtime_version="3.11",
        runtime_path=sys.executable,
        source_dir=src,
        env_dir=src,
        workspace_dir=src,
        env={},
        timeout_s=timeout_s,
        functions=(),
        min_replicas=replicas,
        max_replicas=replicas,
        cpu_target=75,
        profile=DEFAULT_PROFILES[0],
    )


def plain(t: RunTarget) -> PlainLauncher:
    return PlainLauncher("python", sys.executable, t.source_dir, workers=1, label=f"v{t.version}")


@pytest.fixture
async def runner() -> ReplicaRunner:
    r = ReplicaRunner(RunnerSettings(pool=FAST_POOL), launcher_factory=plain)
    yield r  # type: ignore[misc]
    await r.close()


async def test_redeploy_under_load_fails_no_call(tmp_path: Path, runner: ReplicaRunner) -> None:
    v1 = write_project(tmp_path, VERSIONED.format(n=1), "v1")
    v2 = write_project(tmp_path, VERSIONED.format(n=2), "v2")
    await runner.start(target(v1, 1))
    seen: list[int] = []
    errors: list[BaseException] = []
    stop = asyncio.Event()

    async def client() -> None:
        while not stop.is_set():
            try:
                seen.append((await runner.call("demo", "sleep_version", {"s": 0.01})).value)
            except CallError as exc:
                errors.append(exc)

    clients = [asyncio.create_task(client()) for _ in range(8)]
    deadline = time.monotonic() + 30  # v1 answers some calls, then v2 answers plenty
    while len(seen) < 16 and not errors and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    await runner.start(target(v2, 2))
    while seen.count(2) < 24 and not errors and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.gather(*clients)
    assert errors == []
    assert seen[0] == 1 and seen[-1] == 2
    first_v2 = seen.index(2)
    assert 2 not in seen[:first_v2] and 1 not in seen[first_v2 + 8 :]  # switched once
    serving = runner.serving("demo")
    assert serving is not None and serving.target.version == 2


async def test_failed_redeploy_keeps_the_old_version(tmp_path: Path, runner: ReplicaRunner) -> None:
    await runner.start(target(write_project(tmp_path, VERSIONED.format(n=1), "v1"), 1))
    with pytest.raises(RunnerError) as info:
        await runner.start(target(write_project(tmp_path, BROKEN_PY, "v2"), 2))
    assert "RuntimeError: cannot start: missing setting" in str(info.value)
    assert "Traceback" in str(info.value) or "main.py" in str(info.value)
    assert (await runner.call("demo", "version", {})).value == 1


async def test_undeploy_drains_then_refuses(tmp_path: Path, runner: ReplicaRunner) -> None:
    await runner.start(target(write_project(tmp_path, VERSIONED.format(n=1), "v1"), 1))
    running = asyncio.create_task(runner.call("demo", "sleep_version", {"s": 0.3}))
    await asyncio.sleep(0.05)
    await runner.stop("demo")
    assert (await running).value == 1  # the running call finished
    with pytest.raises(Unavailable) as info:
        await runner.call("demo", "version", {})
    assert info.value.http_status == 503
    await runner.stop("demo")  # idempotent


async def test_failing_replicas_are_reported_and_refuse_calls(tmp_path: Path) -> None:
    reported: list[tuple[str, str]] = []

    async def on_failing(script: str, reason: str) -> None:
        reported.append((script, reason))

    runner = ReplicaRunner(
        RunnerSettings(pool=FAST_POOL), launcher_factory=plain, on_failing=on_failing
    )
    # Its replicas die once the flag exists: the first start succeeds however slow the
    # host is, every later one fails (a fixed timer raced the start on a busy machine).
    flag = tmp_path / "die-now"
    dies = (
        "import os, threading, time\n"
        "def _die():\n"
        f"    while not os.path.exists({str(flag)!r}):\n"
        "        time.sleep(0.05)\n"
        "    os._exit(9)\n"
        "threading.Thread(target=_die, daemon=True).start()\n"
    )
    text = dies.replace("{", "{{").replace("}", "}}") + VERSIONED
    try:
        await runner.start(target(write_project(tmp_path, text.format(n=1)), 1))
        flag.touch()
        async with asyncio.timeout(10):
            while not reported:
                await asyncio.sleep(0.05)
        assert reported[0][0] == "demo" and "exit code 9" in reported[0][1]
        with pytest.raises(Unavailable, match="is failing"):
            await runner.call("demo", "version", {})
    finally:
        await runner.close()

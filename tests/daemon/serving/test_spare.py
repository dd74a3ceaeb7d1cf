"""A pool's spare sandbox (daemon/serving/spare.py), with real sandboxes: a scale-up
takes it and answers, a new one is parked after, the environment comes at release, a
spare killed from outside makes a cold start, and stop leaves nothing behind."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path

import pytest

from daemon.serving.launcher import LaunchSettings
from daemon.serving.pool import Pool
from daemon.serving.replica_runner import ReplicaRunner, RunnerSettings
from daemon.serving.spare import Spare
from tests.conftest import require
from tests.daemon.replica_support import (
    FAST_POOL,
    UVLOOP_WARNING,
    event_loop_policy,  # noqa: F401
)
from tests.daemon.serving.test_replica_sandbox import (  # noqa: F401
    MAIN_JS,
    cgroot,
    make_target,
    venv,
)

pytestmark = UVLOOP_WARNING


@pytest.fixture
async def runner(cgroot: object) -> AsyncIterator[ReplicaRunner]:  # noqa: F811
    # The tests' interpreter stands in for the catalogue Python of Node supervisors.
    launch = LaunchSettings(supervisor_python=os.path.realpath(sys.executable))
    r = ReplicaRunner(RunnerSettings(launch=launch, pool=FAST_POOL), cgroot)  # type: ignore[arg-type]
    yield r
    await r.close()


async def _until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def _parked(pool: Pool) -> Spare:
    await _until(lambda: pool.spare.spare is not None)
    spare = pool.spare.spare
    assert spare is not None and spare.alive()
    return spare


def _gone(spare: Spare) -> bool:
    dirs = spare.parked.parked.cgroup.dirs
    return not os.path.exists(f"/proc/{spare.parked.parked.pid}") and not any(
        map(os.path.exists, dirs)
    )


async def test_a_scale_up_takes_the_spare_and_a_new_one_is_parked(
    tmp_path: Path,
    venv: Path,  # noqa: F811
    runner: ReplicaRunner,
) -> None:
    target = make_target(tmp_path, venv)
    await runner.start(target)
    pool = runner._serving["sbx"].pool
    spare = await _parked(pool)
    assert spare.name not in {r.name for r in pool.replicas()}  # never counted
    assert len(pool.usage()) == 1
    # The environment is sent at release: what the launcher holds then, not at park.
    pool.launcher.target = replace(target, env={"GREETING": "fresh"})  # type: ignore[attr-defined]
    pool.scale(2)
    await _until(lambda: len(pool.ready) == 2)
    assert spare.name in {r.name for r in pool.ready}
    new = next(r for r in pool.ready if r.name == spare.name)
    answers = {(await runner.call("sbx", "env", {"name": "GREETING"})).value for _ in range(6)}
    assert "fresh" in answers, answers  # the released replica answers, with the new env
    assert new.busy == 0
    following = await _parked(pool)
    assert following.name != spare.name
    await runner.stop("sbx")
    await _until(lambda: _gone(following))


async def test_a_spare_killed_from_outside_is_not_used_and_is_replaced(
    tmp_path: Path,
    venv: Path,  # noqa: F811
    runner: ReplicaRunner,
) -> None:
    await runner.start(make_target(tmp_path, venv))
    pool = runner._serving["sbx"].pool
    spare = await _parked(pool)
    failures = pool.spare.failures
    os.kill(spare.parked.parked.pid, signal.SIGKILL)
    await _until(lambda: not spare.alive())
    (victim,) = pool.ready
    victim.kill()  # its replacement cannot take the dead spare: cold, or a spare parked since
    await _until(lambda: bool(pool.ready) and victim not in pool.ready)
    (replacement,) = pool.ready
    assert replacement.name != spare.name
    assert (await runner.call("sbx", "add", {"a": 1, "b": 2})).value == 3
    assert pool.spare.failures == failures + 1
    await _until(lambda: _gone(spare))
    again = await _parked(pool)  # a spare again, for the next start
    await runner.stop("sbx")
    await _until(lambda: _gone(again))


async def test_a_node_replica_is_released_from_its_spare(
    tmp_path: Path,
    runner: ReplicaRunner,
) -> None:
    node = shutil.which("node")
    require(node is not None, "needs node")
    src = tmp_path / "js"
    src.mkdir()
    (src / "main.js").write_text(MAIN_JS)
    (tmp_path / "jsenv" / "node_modules").mkdir(parents=True)
    target = replace(
        make_target(tmp_path, tmp_path / "jsenv"),
        language="javascript",
        runtime_path=os.path.realpath(node or ""),
        source_dir=src,
    )
    await runner.start(target)
    pool = runner._serving["sbx"].pool
    spare = await _parked(pool)
    (victim,) = pool.ready
    victim.kill()
    await _until(lambda: {r.name for r in pool.ready} == {spare.name})
    assert (await runner.call("sbx", "env", {"name": "GREETING"})).value == "hello"


async def test_no_spare_when_turned_off(
    tmp_path: Path,
    venv: Path,  # noqa: F811
    cgroot: object,  # noqa: F811
) -> None:
    settings = RunnerSettings(pool=replace(FAST_POOL, spare_sandbox=False))
    runner = ReplicaRunner(settings, cgroot)  # type: ignore[arg-type]
    try:
        await runner.start(make_target(tmp_path, venv))
        pool = runner._serving["sbx"].pool
        assert (await runner.call("sbx", "add", {"a": 1, "b": 2})).value == 3
        pool.spare.refill()
        assert pool.spare.launcher is None and not pool.spare.parked
    finally:
        await runner.close()

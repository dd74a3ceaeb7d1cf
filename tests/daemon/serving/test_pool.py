"""daemon.serving.pool: replacing dead replicas, murdering deaf ones, giving up after repeated
start failures (real supervisor, plain processes)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
from dataclasses import replace
from pathlib import Path

import pytest

from daemon.serving.call_errors import Timeout
from daemon.serving.dispatcher import Dispatcher, DispatchSettings
from daemon.serving.pool import Pool
from daemon.serving.replica import ReplicaStartError
from tests.daemon.replica_support import (
    BROKEN_PY,
    FAST_POOL,
    MAIN_PY,
    UVLOOP_WARNING,
    event_loop_policy,  # noqa: F401
    plain_launcher,
    started,
    write_project,
)

pytestmark = UVLOOP_WARNING


async def wait_until(cond, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.02)


async def test_killed_replica_is_replaced(tmp_path: Path) -> None:
    async with started(write_project(tmp_path), replicas=2) as (d, pool):
        victim = next(iter(pool.ready))
        assert victim.process is not None
        os.killpg(victim.process.pid, signal.SIGKILL)
        await victim.wait_gone()
        await wait_until(lambda: len(pool.ready) == 2 and victim not in pool.ready)
        results = await asyncio.gather(*(d.call("add", {"a": i, "b": 0}) for i in range(20)))
        assert [r.value for r in results] == list(range(20))


async def test_call_on_a_dying_replica_gets_an_answer(tmp_path: Path) -> None:
    async with started(write_project(tmp_path)) as (d, pool):
        victim = next(iter(pool.ready))
        call = asyncio.create_task(d.call("sleep", {"s": 5}))
        await asyncio.sleep(0.1)
        victim.kill()
        with pytest.raises(Exception) as info:
            await asyncio.wait_for(call, 3)
        assert getattr(info.value, "status", None) == "crashed"
        await wait_until(lambda: len(pool.ready) == 1 and victim not in pool.ready)
        assert (await d.call("add", {"a": 1, "b": 1})).value == 2


async def test_deaf_supervisor_is_murdered(tmp_path: Path) -> None:
    settings = replace(FAST_POOL, kill_grace_s=0.3)
    async with started(write_project(tmp_path), timeout_s=0.5, pool_settings=settings) as (
        d,
        pool,
    ):
        victim = next(iter(pool.ready))
        call = asyncio.create_task(d.call("spin", {}))
        await asyncio.sleep(0.2)
        assert victim.process is not None
        os.kill(victim.process.pid, signal.SIGSTOP)  # it will not obey kill_worker
        with pytest.raises(Timeout):
            await call
        await victim.wait_gone()
        await wait_until(lambda: len(pool.ready) == 1 and victim not in pool.ready)
        assert (await d.call("add", {"a": 1, "b": 1})).value == 2


async def test_supervisor_that_stops_answering_pings_is_replaced(tmp_path: Path) -> None:
    settings = replace(FAST_POOL, ping_interval_s=0.1, ping_timeout_s=0.3)
    async with started(write_project(tmp_path), pool_settings=settings) as (d, pool):
        await asyncio.sleep(0.3)  # pings answered: nothing happens
        victim = next(iter(pool.ready))
        assert victim.state == "ready"
        assert victim.process is not None
        os.kill(victim.process.pid, signal.SIGSTOP)
        await asyncio.wait_for(victim.wait_gone(), 5)
        await wait_until(lambda: len(pool.ready) == 1 and victim not in pool.ready)
        assert (await d.call("add", {"a": 1, "b": 1})).value == 2


async def test_load_error_carries_the_traceback(tmp_path: Path) -> None:
    d = Dispatcher("t", 5, DispatchSettings())
    pool = Pool("t-v1", plain_launcher(write_project(tmp_path, BROKEN_PY)), FAST_POOL, d)
    with pytest.raises(ReplicaStartError) as info:
        await pool.start(2)
    err = info.value
    assert err.load_error and err.error is not None
    assert "RuntimeError: cannot start: missing setting" in str(err)
    assert "main.py" in err.error["traceback"]
    assert not pool.ready and not pool.starting


async def test_repeated_start_failures_mark_the_pool_failed(tmp_path: Path) -> None:
    marker = tmp_path / "broken"
    text = f"import os\nif os.path.exists({str(marker)!r}):\n    raise ImportError('no')\n"
    src = write_project(tmp_path, text + MAIN_PY)
    reasons: list[str] = []
    d = Dispatcher("t", 5, DispatchSettings())
    pool = Pool("t-v1", plain_launcher(src), FAST_POOL, d, on_failed=reasons.append)
    await pool.start(1)
    pool.activate()
    try:
        marker.touch()
        next(iter(pool.ready)).kill()
        await wait_until(lambda: pool.failed is not None)
        assert reasons and "3 replica starts failed in a row" in reasons[0]
        assert "ImportError: no" in reasons[0]
        await asyncio.sleep(0.3)
        assert not pool.starting  # no hot loop: it stopped trying
    finally:
        await pool.stop(0)


async def test_replicas_dying_right_after_start_mark_the_pool_failed(tmp_path: Path) -> None:
    # Ready well within 2 s even on a busy host (a 0.3 s timer raced the start), dead long
    # before pool settings' stable_s (10 s): each death counts as a failed start.
    text = "import os, threading\nthreading.Timer(2, os._exit, (9,)).start()\n" + MAIN_PY
    reasons: list[str] = []
    d = Dispatcher("t", 5, DispatchSettings())
    pool = Pool("t-v1", plain_launcher(write_project(tmp_path, text)), FAST_POOL, d, reasons.append)
    await pool.start(1)
    pool.activate()
    try:
        await wait_until(lambda: pool.failed is not None)
        assert re.search(r"exited \d+\.\d s after start: exit code 9", reasons[0]), reasons
    finally:
        await pool.stop(0)


async def test_scale_up_and_down(tmp_path: Path) -> None:
    async with started(write_project(tmp_path)) as (d, pool):
        pool.scale(3)
        await wait_until(lambda: len(pool.ready) == 3)
        pool.scale(1)
        await wait_until(lambda: len(pool.ready) == 1)
        assert (await d.call("add", {"a": 1, "b": 1})).value == 2
        assert len(pool.usage()) == 1

"""daemon.serving.dispatcher against real workers (the real supervisor as a plain process):
results, script errors, the deadline, crashes, the bounded queue."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from daemon.serving.call_errors import (
    FunctionError,
    QueueFull,
    Timeout,
    Unavailable,
    UnknownFunction,
    WorkerCrashed,
)
from daemon.serving.dispatcher import DispatchSettings
from tests.daemon.replica_support import (
    UVLOOP_WARNING,
    event_loop_policy,  # noqa: F401
    started,
    write_project,
)

pytestmark = UVLOOP_WARNING


@pytest.fixture
def src(tmp_path: Path) -> Path:
    return write_project(tmp_path)


async def test_call_ok(src: Path) -> None:
    async with started(src) as (d, _):
        r = await d.call("add", {"a": 2, "b": 3})
        assert r.value == 5
        r = await d.call("echo", payload_json=b'{"x": [1, "y"]}')
        assert r.value == {"x": [1, "y"]}
        assert r.run_ms > 0 and r.queue_ms >= 0 and r.worker_pid > 0


async def test_function_raises(src: Path) -> None:
    async with started(src) as (d, _):
        with pytest.raises(FunctionError) as info:
            await d.call("boom", {})
        err = info.value
        assert err.http_status == 422 and err.status == "error"
        body = err.to_json()["error"]
        assert body["type"] == "ValueError" and body["message"] == "bad input"
        assert "boom" in body["traceback"]
        assert (await d.call("add", {"a": 1, "b": 1})).value == 2  # worker still serves


async def test_timeout_kills_the_worker_only(src: Path) -> None:
    async with started(src, timeout_s=1) as (d, pool):
        replica = next(iter(pool.ready))
        first = (await d.call("pid", {})).value
        t0 = time.monotonic()
        with pytest.raises(Timeout) as info:
            await d.call("spin", {})
        took = time.monotonic() - t0
        assert 0.9 < took < 10  # not before the 1 s timeout; the upper bound is slack
        assert info.value.http_status == 504
        assert "execution timeout of 1 s" in info.value.message
        # next call: a fresh worker in the same replica
        assert (await d.call("add", {"a": 1, "b": 2})).value == 3
        assert (await d.call("pid", {})).value != first
        assert pool.ready == {replica}


async def test_exit_is_named(src: Path) -> None:
    async with started(src) as (d, _):
        with pytest.raises(WorkerCrashed) as info:
            await d.call("die", {"code": 7})
        assert "exited with code 7" in info.value.message
        assert info.value.status == "crashed"
        assert (await d.call("add", {"a": 1, "b": 2})).value == 3


async def test_queue_full_and_max_wait(src: Path) -> None:
    settings = DispatchSettings(max_queue=1, max_wait_s=0.3)
    async with started(src, dispatch=settings) as (d, _):
        busy = asyncio.create_task(d.call("sleep", {"s": 1}))
        await asyncio.sleep(0.05)
        waiting = asyncio.create_task(d.call("add", {"a": 1, "b": 1}))
        await asyncio.sleep(0.05)
        with pytest.raises(QueueFull) as info:
            await d.call("add", {"a": 1, "b": 1})
        assert info.value.http_status == 429
        with pytest.raises(QueueFull, match=r"within 0\.3 s"):
            await waiting  # waited past max_wait
        assert (await busy).value == 1


async def test_queued_call_runs_when_a_worker_frees(src: Path) -> None:
    async with started(src) as (d, _):
        calls = [asyncio.create_task(d.call("sleep", {"s": 0.1})) for _ in range(3)]
        results = await asyncio.gather(*calls)
        assert [r.value for r in results] == [0.1] * 3
        assert results[2].queue_ms > 150


async def test_unknown_function_and_closed(src: Path) -> None:
    async with started(src) as (d, pool):
        d.functions = frozenset(pool.functions)
        assert "add" in d.functions and "os" not in d.functions
        with pytest.raises(UnknownFunction):
            await d.call("nope", {})
        d.close("script 'test' is not deployed")
        with pytest.raises(Unavailable, match="not deployed"):
            await d.call("add", {"a": 1, "b": 1})


async def test_cancelled_caller_does_not_lose_the_worker(src: Path) -> None:
    async with started(src) as (d, _):
        task = asyncio.create_task(d.call("sleep", {"s": 0.2}))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        r = await asyncio.wait_for(d.call("add", {"a": 1, "b": 1}), 3)
        assert r.value == 2 and r.queue_ms > 50


async def test_many_concurrent_calls_all_answered(src: Path) -> None:
    async with started(src, workers=2, dispatch=DispatchSettings(max_queue=500)) as (d, _):
        results = await asyncio.gather(*(d.call("add", {"a": i, "b": 1}) for i in range(200)))
        assert [r.value for r in results] == [i + 1 for i in range(200)]


async def test_submit_answers_a_callback_once_and_calls_arm_no_timer_each(src: Path) -> None:
    async with started(src, timeout_s=30) as (d, _):
        outcomes: list[object] = []
        answered = asyncio.Event()

        def done(outcome: object) -> None:
            outcomes.append(outcome)
            answered.set()

        d.submit("add", done, {"a": 2, "b": 2})
        await asyncio.wait_for(answered.wait(), 10)
        (result,) = outcomes
        assert getattr(result, "value", None) == 4
        timer = d._timer  # armed once for the first deadline: later calls keep it
        for i in range(5):
            assert (await d.call("add", {"a": i, "b": 0})).value == i
        assert d._timer is timer and not d._running
        with pytest.raises(UnknownFunction):  # refused at once: no callback
            d.functions = frozenset({"add"})
            d.submit("nope", done, {})
        assert len(outcomes) == 1


async def test_a_shorter_timeout_brings_the_one_timer_forward(src: Path) -> None:
    async with started(src, timeout_s=30) as (d, _):
        assert (await d.call("add", {"a": 1, "b": 1})).value == 2  # timer at +30 s
        d.timeout_s = 1  # as a redeploy with a new timeout does
        t0 = time.monotonic()
        with pytest.raises(Timeout):
            await d.call("spin", {})
        assert 0.9 < time.monotonic() - t0 < 10

"""Calls in flight per worker (the script's `concurrency`), against real workers (the
real supervisor and harnesses as a plain process group): async functions as tasks,
sync ones in threads, Node calls side by side, and a timeout among concurrent calls."""

from __future__ import annotations

import asyncio
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from daemon.serving.call_errors import Timeout, WorkerCrashed
from daemon.serving.dispatcher import DispatchSettings
from daemon.serving.plain_launcher import PlainLauncher
from tests.conftest import require
from tests.daemon.replica_support import (
    UVLOOP_WARNING,
    event_loop_policy,  # noqa: F401
    started,
    write_project,
)

pytestmark = UVLOOP_WARNING

MAIN_PY = """
import asyncio
import os
import sys
import time


async def nap(ms, tag=""):
    print("nap", tag)
    await asyncio.sleep(ms / 1000)
    return os.getpid()


def block(ms, tag=""):
    print("block", tag)
    sys.stderr.write("err " + tag)
    time.sleep(ms / 1000)
    return os.getpid()


async def hang():
    await asyncio.sleep(3600)


async def stall(s):
    time.sleep(s)  # blocks the worker's event loop: it reads nothing meanwhile


async def mark(path):
    with open(path, "a") as f:
        f.write(f"{os.getpid()}\\n")
    return os.getpid()
"""

MAIN_JS = """
exports.nap = async ({ ms, tag }) => {
  console.log('nap', tag);
  await new Promise((resolve) => setTimeout(resolve, ms));
  return process.pid;
};
exports.hang = (_, { signal }) => new Promise((resolve, reject) => {
  signal.addEventListener('abort', () => reject(signal.reason));
});
exports.boom = () => new Promise(() => {
  setTimeout(() => { throw new RangeError('thrown from a timer'); }, 50);
});
"""

SERIAL_S = 20 * 0.3  # 20 calls of 300 ms one after another


async def test_async_calls_run_side_by_side_on_one_worker(tmp_path: Path) -> None:
    src = write_project(tmp_path, MAIN_PY)
    async with started(src, concurrency=20) as (d, _):
        await d.call("nap", {"ms": 1})  # warm
        t0 = time.monotonic()
        calls = [d.call("nap", {"ms": 300, "tag": str(i)}) for i in range(20)]
        results = await asyncio.wait_for(asyncio.gather(*calls), 30)
        took = time.monotonic() - t0
        assert len({r.value for r in results}) == 1  # one worker served them all
        assert took < SERIAL_S / 2, f"20 calls of 300 ms took {took:.2f} s: not concurrent"
        assert [r.stdout for r in results] == [f"nap {i}\n" for i in range(20)]
        assert all(r.frame.get("peak_memory_bytes", 0) is not None for r in results)


async def test_sync_calls_run_in_a_thread_pool(tmp_path: Path) -> None:
    src = write_project(tmp_path, MAIN_PY)
    async with started(src, concurrency=4) as (d, _):
        await d.call("block", {"ms": 1})
        t0 = time.monotonic()
        calls = [d.call("block", {"ms": 500, "tag": str(i)}) for i in range(4)]
        results = await asyncio.wait_for(asyncio.gather(*calls), 30)
        took = time.monotonic() - t0
        assert len({r.value for r in results}) == 1
        assert took < 4 * 0.5 * 0.75, f"4 sync calls of 500 ms took {took:.2f} s: serial"
        # each call's output is its own, though they printed at the same time
        assert [(r.stdout, r.stderr) for r in results] == [
            (f"block {i}\n", f"err {i}") for i in range(4)
        ]
        assert all(0 <= r.cpu_ms < 400 for r in results)  # thread CPU, not the sleep


async def test_a_cancelled_async_call_leaves_the_worker_and_its_neighbours(
    tmp_path: Path,
) -> None:
    src = write_project(tmp_path, MAIN_PY)
    async with started(src, timeout_s=1, concurrency=4) as (d, _):
        pid = (await d.call("nap", {"ms": 1})).value
        hung = asyncio.ensure_future(d.call("hang", {}, call_id="hung-1"))
        beside = [d.call("nap", {"ms": 500, "tag": str(i)}) for i in range(2)]
        with pytest.raises(Timeout) as info:
            await asyncio.wait_for(hung, 10)
        assert "cancelled in its worker" in info.value.message
        done = await asyncio.wait_for(asyncio.gather(*beside), 10)
        assert {r.value for r in done} == {pid}  # answered, by the same worker
        assert (await d.call("nap", {"ms": 1})).value == pid  # not killed


async def test_a_call_that_ignores_its_cancel_stops_the_worker_and_names_itself(
    tmp_path: Path,
) -> None:
    src = write_project(tmp_path, MAIN_PY)
    settings = DispatchSettings(cancel_grace_s=0.3)
    async with started(src, timeout_s=2, concurrency=4, dispatch=settings) as (d, _):
        pid = (await d.call("nap", {"ms": 1})).value
        stuck = asyncio.ensure_future(d.call("block", {"ms": 30_000}, call_id="stuck-1"))
        # The calls beside it arrive 1 s later, so their own deadlines (2 s after arrival)
        # come after the stuck call's deadline plus its grace: they are lost with the worker.
        await asyncio.sleep(1.0)
        beside = [asyncio.ensure_future(d.call("nap", {"ms": 20_000})) for _ in range(2)]
        with pytest.raises(Timeout):
            await asyncio.wait_for(stuck, 10)
        for fut in beside:  # a thread cannot be stopped: the worker is, and they with it
            with pytest.raises(WorkerCrashed) as info:
                await asyncio.wait_for(fut, 10)
            assert "call stuck-1" in info.value.message
            assert "did not end within 0.3 s of being cancelled" in info.value.message
            assert info.value.extra["stopped_for"] == "stuck-1"
        fresh = await asyncio.wait_for(d.call("nap", {"ms": 1}), 20)
        assert fresh.value != pid


async def test_calls_a_lost_worker_never_read_run_on_another(tmp_path: Path) -> None:
    src = write_project(tmp_path, MAIN_PY)
    settings = DispatchSettings(cancel_grace_s=0.3)
    async with started(src, timeout_s=5, concurrency=4, dispatch=settings) as (d, pool):
        pid = (await d.call("nap", {"ms": 1})).value
        (worker,) = next(iter(pool.ready)).workers.values()
        stalled = asyncio.ensure_future(d.call("stall", {"s": 60}, call_id="stall-1"))
        deadline = time.monotonic() + 10
        while not ("stall-1" in worker.calls and worker.calls["stall-1"].started):
            assert time.monotonic() < deadline, "the worker never acknowledged the call"
            await asyncio.sleep(0.01)
        # Sent while its loop is blocked (so never read), and 1.5 s after the stalled
        # call, so that their deadlines come after its deadline plus the grace period.
        await asyncio.sleep(1.5)
        unread = [asyncio.ensure_future(d.call("nap", {"ms": 100})) for _ in range(2)]
        with pytest.raises(Timeout):
            await asyncio.wait_for(stalled, 10)
        moved = await asyncio.wait_for(asyncio.gather(*unread), 10)
        assert {r.value for r in moved} != {pid}  # answered by the fresh worker


async def test_a_killed_worker_is_read_to_its_end_for_the_calls_it_acknowledged(
    tmp_path: Path,
) -> None:
    """The daemon kills a worker (a call ignored its cancel) while the ack and the answer
    of another call wait unread in its socket (the daemon's loop was busy): that call
    ran, so it must not be sent to another worker; it is read, answered, and run once."""
    src = write_project(tmp_path, MAIN_PY)
    marker = tmp_path / "marked"
    settings = DispatchSettings(cancel_grace_s=0.3)
    async with started(src, timeout_s=2, concurrency=4, dispatch=settings) as (d, pool):
        pid = (await d.call("nap", {"ms": 1})).value
        (worker,) = next(iter(pool.ready)).workers.values()
        stuck = asyncio.ensure_future(d.call("block", {"ms": 30_000}, call_id="stuck-1"))
        await until(lambda: "stuck-1" in worker.calls and worker.calls["stuck-1"].started)
        # 1.5 s later, so that its deadline comes well after the stuck call's plus the
        # grace (it is answered in between).
        await asyncio.sleep(1.5)
        assert worker.channel is not None and worker.channel.transport is not None
        transport = worker.channel.transport
        transport.pause_reading()  # as a busy loop would: what the worker says waits
        marked = asyncio.ensure_future(d.call("mark", {"path": str(marker)}))
        await until(marker.exists)
        with pytest.raises(Timeout):
            await asyncio.wait_for(stuck, 10)
        await until(lambda: not worker.alive)  # killed: the stuck call ignored its cancel
        if not transport.is_closing():
            transport.resume_reading()
        assert (await asyncio.wait_for(marked, 10)).value == pid
        assert marker.read_text() == f"{pid}\n"  # run once, not sent again


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition never came true"
        await asyncio.sleep(0.01)


def node_project(tmp_path: Path, concurrency: int) -> tuple[Path, PlainLauncher]:
    """MAIN_JS as a project, and a launcher running it on Node at that concurrency."""
    node = shutil.which("node")
    require(node is not None, "node is not installed")
    src = tmp_path / "js"
    src.mkdir()
    (src / "main.js").write_text(MAIN_JS)
    launcher = PlainLauncher("javascript", sys.executable, src, node=node, label="js v1")
    launcher.concurrency = concurrency
    return src, launcher


async def test_node_calls_run_side_by_side(tmp_path: Path) -> None:
    src, launcher = node_project(tmp_path, concurrency=20)
    async with started(src, timeout_s=1, launcher=launcher) as (d, _):
        await d.call("nap", {"ms": 1, "tag": "warm"})
        t0 = time.monotonic()
        calls = [d.call("nap", {"ms": 300, "tag": str(i)}) for i in range(20)]
        results = await asyncio.wait_for(asyncio.gather(*calls), 30)
        took = time.monotonic() - t0
        assert len({r.value for r in results}) == 1
        assert took < SERIAL_S / 2, f"20 calls of 300 ms took {took:.2f} s: not concurrent"
        assert [r.stdout for r in results] == [f"nap {i}\n" for i in range(20)]
        # a cancelled call is answered by its worker (the signal aborted), which lives on
        with pytest.raises(Timeout):
            await asyncio.wait_for(d.call("hang", {}), 10)
        assert (await d.call("nap", {"ms": 1, "tag": "after"})).value == results[0].value


async def test_an_uncaught_node_exception_fails_every_call_in_flight_as_a_crash(
    tmp_path: Path,
) -> None:
    src, launcher = node_project(tmp_path, concurrency=4)
    async with started(src, timeout_s=20, launcher=launcher) as (d, _):
        pid = (await d.call("nap", {"ms": 1, "tag": "warm"})).value
        beside = [asyncio.ensure_future(d.call("nap", {"ms": 15_000})) for _ in range(2)]
        calls = [*beside, asyncio.ensure_future(d.call("boom", {}))]
        for call in calls:  # whose exception it was, nobody can tell: each is a crash
            with pytest.raises(WorkerCrashed) as info:
                await asyncio.wait_for(call, 10)
            assert info.value.http_status == 502 and info.value.error_type == "worker_crashed"
            assert "an exception no call caught (RangeError: thrown from a timer)" in (
                info.value.message
            )
            assert "concurrency 4" in info.value.message
            assert info.value.extra["cause"]["type"] == "RangeError"
        fresh = await asyncio.wait_for(d.call("nap", {"ms": 1, "tag": "after"}), 20)
        assert fresh.value != pid  # the worker exited and was replaced

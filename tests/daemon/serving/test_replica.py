"""daemon.serving.replica: start (hello + K workers), start failures with their reason, drain and
stop (real supervisor as a plain process group)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from daemon.serving.dispatcher import Dispatcher, DispatchSettings
from daemon.serving.plain_launcher import PlainLauncher, PlainProcess
from daemon.serving.replica import Replica, ReplicaStartError
from daemon.serving.worker import Worker
from tests.daemon.replica_support import (
    BROKEN_PY,
    UVLOOP_WARNING,
    event_loop_policy,  # noqa: F401
    plain_launcher,
    write_project,
)

pytestmark = UVLOOP_WARNING


class Collect:
    """A Listener that keeps what the replica tells it."""

    def __init__(self) -> None:
        self.free: list[Worker] = []
        self.exited: list[Replica] = []

    def worker_ready(self, worker: Worker) -> None:
        self.free.append(worker)

    def replica_exited(self, replica: Replica) -> None:
        self.exited.append(replica)


class SilentLauncher(PlainLauncher):
    """Starts a process that never speaks the protocol."""

    def launch(self, name: str, control_fd: int, output_fd: int) -> PlainProcess:
        import subprocess

        popen = subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(30)"],
            pass_fds=(control_fd,),  # holds the control socket open, says nothing
            start_new_session=True,
        )
        return PlainProcess(popen)


async def test_ready_after_hello_and_k_workers(tmp_path: Path) -> None:
    listener = Collect()
    replica = Replica("r1", plain_launcher(write_project(tmp_path), workers=2), listener)
    await replica.start(timeout=20)
    try:
        assert replica.hello is not None and "add" in replica.hello["functions"]
        assert "_private" not in replica.hello["functions"]
        assert len(listener.free) == 2 and {w.slot for w in listener.free} == {0, 1}
        assert all(w.usable for w in listener.free)
        assert replica.usage() is not None
    finally:
        await replica.stop(drain_timeout=1)
    assert replica.gone and replica.state == "stopped" and listener.exited == [replica]


async def test_load_error(tmp_path: Path) -> None:
    replica = Replica("r1", plain_launcher(write_project(tmp_path, BROKEN_PY)), Collect())
    with pytest.raises(ReplicaStartError) as info:
        await replica.start(timeout=20)
    assert info.value.error is not None
    assert info.value.error["type"] == "RuntimeError"
    assert "raise RuntimeError" in info.value.error["traceback"]
    await asyncio.wait_for(replica.wait_gone(), 5)


async def test_start_timeout(tmp_path: Path) -> None:
    launcher = SilentLauncher("python", sys.executable, tmp_path, label="silent v1")
    replica = Replica("r1", launcher, Collect())
    with pytest.raises(ReplicaStartError, match=r"did not become ready within 0\.3 s"):
        await replica.start(timeout=0.3)
    await asyncio.wait_for(replica.wait_gone(), 5)


async def test_exit_before_ready_names_the_exit(tmp_path: Path) -> None:
    launcher = PlainLauncher("python", "/bin/false", tmp_path, label="false v1")
    replica = Replica("r1", launcher, Collect())
    with pytest.raises(ReplicaStartError, match="exited before it was ready: exit code 1"):
        await replica.start(timeout=5)


async def test_stop_drains_the_running_call(tmp_path: Path) -> None:
    dispatcher = Dispatcher("t", 10, DispatchSettings())

    class Offer(Collect):
        def worker_ready(self, worker: Worker) -> None:
            dispatcher.offer(worker)

    replica = Replica("r1", plain_launcher(write_project(tmp_path)), Offer())
    await replica.start(timeout=20)
    call = asyncio.create_task(dispatcher.call("sleep", {"s": 0.3}))
    await asyncio.sleep(0.05)
    await replica.stop(drain_timeout=5)
    assert (await call).value == 0.3
    assert replica.gone

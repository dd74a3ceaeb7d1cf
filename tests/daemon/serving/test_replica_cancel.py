"""A deploy cancelled while its replicas start (a delete during Deploying) leaves no
sandbox process and no cgroup behind, wherever the cancel lands (real sandboxes, root)."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

import daemon.serving.replica_runner as replicas_runner
from daemon.serving.launcher import LaunchSettings, SandboxLauncher
from daemon.serving.pool import Pool
from daemon.serving.replica_runner import ReplicaRunner, RunnerSettings
from daemon.serving.target import RunTarget
from tests.conftest import require, require_root
from tests.daemon.replica_support import (
    FAST_POOL,
    MAIN_PY,
    UVLOOP_WARNING,
    event_loop_policy,  # noqa: F401
)
from tests.daemon.serving.test_launcher_host import own_venv
from tests.daemon.serving.test_replica_sandbox import make_target

pytestmark = UVLOOP_WARNING

SLOW_IMPORT = "import time\ntime.sleep(3)\n" + MAIN_PY  # hello comes 3 s after launch


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return own_venv(tmp_path_factory.mktemp("cancel"))


@pytest.fixture(scope="module")
def cgroot() -> Iterator[Any]:
    require_root()
    require(os.path.exists("/proc/self/ns/pid"), "needs namespaces")
    from sandbox import CgroupRoot

    root = CgroupRoot.create(f"scriptd-ctest-{os.getpid()}")
    yield root
    root.cleanup()


class SlowLauncher(SandboxLauncher):
    """Records every sandbox; the Nth launch sleeps delays[N] = (before, after) s."""

    def __init__(self, *args: Any, delays: list[tuple[float, float]]) -> None:
        super().__init__(*args)
        self.delays = delays
        self.boxes: list[Any] = []
        self.lock = threading.Lock()

    def launch(self, name: str, control_fd: int, output_fd: int) -> Any:
        with self.lock:
            before, after = self.delays.pop(0) if self.delays else (0.0, 0.0)
        time.sleep(before)
        box = super().launch(name, control_fd, output_fd)
        self.boxes.append(box)
        time.sleep(after)
        return box


@pytest.fixture
def pools(monkeypatch: pytest.MonkeyPatch) -> list[Pool]:
    """Every Pool the runner makes (it is not in the runner's table until it serves)."""
    made: list[Pool] = []

    class Recorded(Pool):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(replicas_runner, "Pool", Recorded)
    return made


@pytest.fixture
async def runner(cgroot: Any) -> AsyncIterator[tuple[ReplicaRunner, list[SlowLauncher]]]:
    launchers: list[SlowLauncher] = []
    delays: list[list[tuple[float, float]]] = []

    def factory(target: RunTarget) -> SlowLauncher:
        launcher = SlowLauncher(target, LaunchSettings(), cgroot, delays=delays.pop(0))
        launchers.append(launcher)
        return launcher

    r = ReplicaRunner(RunnerSettings(pool=FAST_POOL), launcher_factory=factory)
    r.delays = delays  # type: ignore[attr-defined]
    yield r, launchers
    await r.close()


async def until(check: Any, timeout: float = 10) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.01)


def leaves(root: Any) -> list[str]:
    """Sandbox cgroups still below our root (none once every replica is cleaned up)."""
    return [e for d in root.hierarchy_dirs() for e in os.listdir(d) if os.path.isdir(f"{d}/{e}")]


async def cancel_start(runner: ReplicaRunner, target: RunTarget, when: Any) -> None:
    task = asyncio.create_task(runner.start(target))
    await until(when)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def assert_nothing_left(launchers: list[SlowLauncher], root: Any, runner: ReplicaRunner) -> None:
    boxes = [b for launcher in launchers for b in launcher.boxes]
    assert boxes
    for box in boxes:
        assert box.exit is not None, box  # reaped: no process of it runs
        assert not any(os.path.exists(d) for d in box.cgroup.dirs), box
    assert leaves(root) == []
    assert runner.dispatcher("sbx") is None


async def test_cancel_during_launch(tmp_path: Path, venv: Path, runner: Any, cgroot: Any) -> None:
    r, launchers = runner
    r.delays.append([(0.0, 1.0)])  # the sandbox runs, the thread has not returned yet
    t0 = time.monotonic()
    await cancel_start(r, make_target(tmp_path, venv), lambda: launchers and launchers[0].boxes)
    assert time.monotonic() - t0 < 5  # no wait for a replica that is never set gone
    assert_nothing_left(launchers, cgroot, r)


async def test_cancel_while_waiting_for_hello(
    tmp_path: Path, venv: Path, runner: Any, cgroot: Any
) -> None:
    r, launchers = runner
    r.delays.append([])
    target = make_target(tmp_path, venv, SLOW_IMPORT)
    await cancel_start(r, target, lambda: launchers and launchers[0].boxes)
    assert_nothing_left(launchers, cgroot, r)


async def test_cancel_after_one_of_two_is_ready(
    tmp_path: Path, venv: Path, runner: Any, cgroot: Any, pools: list[Pool]
) -> None:
    r, launchers = runner
    r.delays.append([(0.0, 0.0), (1.5, 0.0)])  # the second starts late
    target = replace(make_target(tmp_path, venv), min_replicas=2, max_replicas=2)
    await cancel_start(r, target, lambda: pools and len(pools[0].ready) == 1)
    assert_nothing_left(launchers, cgroot, r)
    await r.stop("sbx")  # nothing to stop: it never served

"""Helpers for the replica/pool/dispatcher tests: small real projects and a started pool.

The workers are the real runtimes/supervisor.py and Python harness, run as a plain
process group (PlainLauncher) or in a real sandbox (SandboxLauncher, as root)."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import uvloop

from daemon.serving.dispatcher import Dispatcher, DispatchSettings
from daemon.serving.plain_launcher import PlainLauncher
from daemon.serving.pool import Pool, PoolSettings

MAIN_PY = """
import os
import time


def echo(**kw):
    return kw


def add(a, b):
    return a + b


def boom():
    raise ValueError("bad input")


def spin():
    while True:
        pass


def die(code=7):
    os._exit(code)


def hog(mb):
    blocks = []
    for _ in range(mb):
        blocks.append(b"x" * (1024 * 1024))
    return len(blocks)


def sleep(s):
    time.sleep(s)
    return s


def pid():
    return os.getpid()


def env(name):
    return os.environ.get(name)


def write_workspace(text):
    path = os.path.join(os.environ["WORKSPACE_DIR"], "note.txt")
    with open(path, "w") as f:
        f.write(text)
    return open(path).read()
"""

BROKEN_PY = """
import os

def fine():
    return 1

raise RuntimeError("cannot start: " + "missing setting")
"""


def write_project(root: Path, text: str = MAIN_PY, name: str = "proj") -> Path:
    src = root / name
    src.mkdir(parents=True, exist_ok=True)
    (src / "main.py").write_text(textwrap.dedent(text))
    return src


def plain_launcher(
    src: Path, workers: int = 1, label: str = "test v1", concurrency: int = 1
) -> PlainLauncher:
    launcher = PlainLauncher("python", sys.executable, src, workers=workers, label=label)
    launcher.concurrency = concurrency
    return launcher


# pytest-asyncio deprecates this fixture in favour of a conftest hook that would change
# every test of the project; until the project adopts it, keep the warning quiet here.
UVLOOP_WARNING = pytest.mark.filterwarnings('ignore:Overriding the "event_loop_policy"')


@pytest.fixture
def event_loop_policy() -> uvloop.EventLoopPolicy:
    """The daemon runs on uvloop: so do these tests (import this fixture into a module)."""
    return uvloop.EventLoopPolicy()


FAST_POOL = PoolSettings(start_timeout_s=20, backoff_s=0.05, kill_grace_s=3, tick_s=0.1)


@asynccontextmanager
async def started(
    src: Path,
    *,
    timeout_s: float = 10,
    workers: int = 1,
    replicas: int = 1,
    dispatch: DispatchSettings | None = None,
    pool_settings: PoolSettings = FAST_POOL,
    concurrency: int = 1,
    launcher: PlainLauncher | None = None,
) -> AsyncIterator[tuple[Dispatcher, Pool]]:
    dispatcher = Dispatcher("test", timeout_s, dispatch or DispatchSettings())
    launcher = launcher or plain_launcher(src, workers, concurrency=concurrency)
    pool = Pool("test-v1", launcher, pool_settings, dispatcher)
    await pool.start(replicas)
    pool.activate()
    try:
        yield dispatcher, pool
    finally:
        await pool.stop(drain_timeout=1)

"""One build of an environment at a time across daemons that share a cache folder.

Within one daemon the builder holds an asyncio lock per environment key; daemons
side by side (`build.cache_dir` shared, as the tests do) also take an flock on
`<cache>/locks/<key>`, so the second one waits and then finds the environment
built instead of building it again and renaming over it. The lock files are a
few bytes each and never removed: removing one while another daemon holds it
would let a third take a lock on a new file.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from daemon.core.errors import BuildError

POLL_S = 0.2  # how often a waiting daemon tries the lock again


def _open_lock(path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@contextlib.asynccontextmanager
async def host_lock(
    path: Path, deadline: float, on_wait: Callable[[], Awaitable[None]]
) -> AsyncIterator[None]:
    """Hold the flock on `path`; `on_wait` is awaited once if another process holds
    it. Polls (never blocks a thread); BuildError past `deadline` (monotonic)."""
    fd = await asyncio.to_thread(_open_lock, path)
    try:
        if not _try_lock(fd):
            await on_wait()
            while not _try_lock(fd):
                if time.monotonic() > deadline:
                    raise BuildError(f"another daemon kept building {path.name} too long")
                await asyncio.sleep(POLL_S)
        yield
    finally:
        os.close(fd)  # releases the lock

"""A replica's start, before its supervisor speaks: the error a failed start raises, and
the launch of its process tree in a thread, which a cancel cannot leave behind."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any, NamedTuple

from daemon.core.cancel import uncancellable
from daemon.serving.process import Launcher, Process
from daemon.serving.replica_output import OutputPump

__all__ = ["Launched", "ReplicaStartError", "launch_in_thread"]


class Launched(NamedTuple):
    """A replica's process tree, started: the daemon's end of its control socket, the
    pipe of its output (not started yet) and the tree."""

    sock: socket.socket
    output: OutputPump
    process: Process


class ReplicaStartError(Exception):
    """A replica did not become ready. str() is the reason; `error` is the script's
    load error ({type, message, traceback}) when its main file failed to import."""

    def __init__(self, reason: str, error: dict[str, Any] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.error = error

    @property
    def load_error(self) -> bool:
        return self.error is not None


async def launch_in_thread(
    launcher: Launcher, name: str, control_fd: int, output_fd: int
) -> Process:
    """launcher.launch in a thread. A cancel cannot stop that thread: the process tree it
    starts is then waited for, killed and cleaned up before the cancel goes on."""
    launch = launcher.launch
    task = asyncio.ensure_future(asyncio.to_thread(launch, name, control_fd, output_fd))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await uncancellable(_discard(task))
        raise


async def _discard(launching: asyncio.Future[Process]) -> None:
    """Kill and clean up the process a cancelled start launched (if it launched one)."""
    try:
        process = await launching
    except Exception:
        return  # it failed to start: nothing runs
    process.kill()
    with contextlib.suppress(Exception):
        await process.wait()
    with contextlib.suppress(Exception):
        await asyncio.to_thread(process.cleanup)

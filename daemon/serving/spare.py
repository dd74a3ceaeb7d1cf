"""A pool's spare: the sandbox of its next replica, launched ahead and parked before exec.

A new replica's first answer is the sandbox's launch (the clone of pid 1, the cgroup
joins, the root's mounts, credentials, seccomp: 7-10 ms on this class of machine)
plus its supervisor's start. A pool keeps one replica launched ahead up to its exec
(SandboxLauncher.park, sandbox/parked.py), with the identity a replica gets at start:
its name, cgroup, control socket, output pipe and egress socket. A replica start takes
it and releases it (the environment of now is sent, pid 1 execs), then the next spare
is parked in the background. A spare that died, or fails its release, is discarded and
the start goes cold; it is never half a replica.

A spare is no replica until it is released: it is in none of the pool's sets (so not
counted by status, usage, metering or metrics), gets no calls, and its output has no
log. `SpareSlot.close` (the pool's stop) kills it and removes its cgroup; a daemon that
was killed leaves its cgroup to the next start's sweep (CgroupRoot.create), and pid 1
exits by itself when the daemon's end of its go pipe closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from daemon.core.cancel import uncancellable
from daemon.serving.launcher import ParkedSandbox
from daemon.serving.process import Process
from daemon.serving.replica_output import NoSink, OutputPump
from daemon.serving.replica_start import Launched

log = logging.getLogger(__name__)

__all__ = ["Parking", "Spare", "SpareSlot"]

MAX_FAILURES = 3  # spares that failed or died in a row: then the pool parks no more
# The next spare is parked this long after a start, not at once: parking takes a few ms
# of CPU (a thread, the zygote, pid 1), which at once would compete with the new
# replica's first calls (+2.4 ms to its first answer, 21.0 against 18.7 ms, on 2 cores).
PARK_DELAY_S = 0.25


@runtime_checkable
class Parking(Protocol):
    """A launcher that can start a replica in two halves (SandboxLauncher)."""

    label: str

    def park(self, name: str, control_fd: int, output_fd: int) -> ParkedSandbox: ...
    def release(self, spare: ParkedSandbox) -> Process: ...
    def discard(self, spare: ParkedSandbox) -> None: ...
    def output(self, name: str) -> OutputPump: ...


@dataclass
class Spare:
    """A parked replica-to-be: what Replica.start would have made before launching."""

    name: str
    sock: socket.socket  # the daemon's end of its control socket
    output: OutputPump  # its stdout and stderr (no sink until released)
    parked: ParkedSandbox

    def alive(self) -> bool:
        return self.parked.parked.alive()


class SpareSlot:
    """The one spare of a pool: `take` it for a start, `refill` after, `close` at stop."""

    def __init__(self, launcher: Parking | None, new_name: Callable[[], str]) -> None:
        self.launcher = launcher  # None: spares are off (setting, or a plain launcher)
        self.new_name = new_name
        self.spare: Spare | None = None
        self.failures = 0
        self._parking: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    @property
    def parked(self) -> bool:
        return self.spare is not None

    async def take(self) -> tuple[str, Launched] | None:
        """Release the spare for a replica start: its name and its launched tree; None
        when there is none or it could not be released (then start cold)."""
        spare, self.spare = self.spare, None
        if spare is None or self.launcher is None:
            return None
        if not spare.alive():
            self._failed(spare, "it died while parked")
            return None
        launched = await self._release(self.launcher, spare)
        if launched is not None:
            self.failures = 0
        return (spare.name, launched) if launched is not None else None

    def refill(self, delay: float = PARK_DELAY_S) -> None:
        """Park a spare in the background, in `delay` seconds, unless one is parked or
        being parked."""
        busy = self.spare is not None or self._parking is not None
        if self.launcher is None or self._closed or busy or self.failures >= MAX_FAILURES:
            return
        self._parking = asyncio.get_running_loop().create_task(self._park(self.launcher, delay))

    def check(self) -> None:
        """The pool's tick: a spare that died while parked is replaced."""
        if self.spare is not None and not self.spare.alive():
            spare, self.spare = self.spare, None
            self._failed(spare, "it died while parked")
            self.refill(0)

    async def close(self) -> None:
        """Park no more; kill the spare and remove its cgroup (and one being parked)."""
        self._closed = True
        if self._parking is not None:
            self._parking.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._parking
        spare, self.spare = self.spare, None
        if spare is not None:
            self._discard_soon(spare)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # --- helpers --------------------------------------------------------------
    async def _park(self, launcher: Parking, delay: float) -> None:
        try:
            await asyncio.sleep(delay)
            spare = await _park_in_thread(launcher, self.new_name())
        except Exception as exc:
            self.failures += 1
            log.warning("%s: parking a spare sandbox failed (%d in a row): %s",
                        launcher.label, self.failures, exc)  # fmt: skip
            return
        finally:
            self._parking = None
        if self._closed:
            self._discard_soon(spare)
        else:
            self.spare = spare

    async def _release(self, launcher: Parking, spare: Spare) -> Launched | None:
        try:
            output = launcher.output(spare.name)  # where a replica's output goes (its log)
        except Exception as exc:
            self._failed(spare, f"its output cannot be opened: {exc}")
            return None
        task = asyncio.ensure_future(asyncio.to_thread(launcher.release, spare.parked))
        try:
            process = await asyncio.shield(task)
        except asyncio.CancelledError:
            output.close()
            await uncancellable(_kill_released(task, spare))
            raise
        except Exception as exc:  # the launcher discarded it
            output.close()
            self.failures += 1
            log.warning("%s: spare sandbox %s lost: %s; starting cold (%d in a row)",
                        launcher.label, spare.name, exc, self.failures)  # fmt: skip
            _close_ends(spare)
            return None
        spare.output.take_sink(output)
        return Launched(spare.sock, spare.output, process)

    def _failed(self, spare: Spare, why: str) -> None:
        self.failures += 1
        log.warning("spare sandbox %s discarded: %s", spare.name, why)
        if self.failures == MAX_FAILURES:
            log.warning("%d spare sandboxes failed in a row: this version's replicas "
                        "start cold from now on", MAX_FAILURES)  # fmt: skip
        self._discard_soon(spare)

    def _discard_soon(self, spare: Spare) -> None:
        if self.launcher is None:
            return
        task = asyncio.get_running_loop().create_task(_discard(self.launcher, spare))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


async def _park_in_thread(launcher: Parking, name: str) -> Spare:
    """launcher.park in a thread; a cancel waits for it and discards what it parked."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    pump = OutputPump(NoSink(), 1, name)
    try:
        task = asyncio.ensure_future(
            asyncio.to_thread(launcher.park, name, theirs.fileno(), pump.write_fd)
        )
        try:
            parked = await asyncio.shield(task)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                spare = Spare(name, ours, pump, await uncancellable(task))
                await uncancellable(_discard(launcher, spare))
            raise
    except BaseException:
        ours.close()
        pump.close()
        raise
    finally:
        theirs.close()
        pump.release_write_end()
    return Spare(name, ours, pump, parked)


async def _discard(launcher: Parking, spare: Spare) -> None:
    try:
        await asyncio.to_thread(launcher.discard, spare.parked)
    except Exception as exc:
        log.warning("spare sandbox %s: discarding it failed: %s", spare.name, exc)
    finally:
        _close_ends(spare)


async def _kill_released(releasing: asyncio.Future[Process], spare: Spare) -> None:
    """A cancelled release: kill and clean up the tree if it was released."""
    try:
        process = await releasing
    except Exception:
        return
    finally:
        _close_ends(spare)
    process.kill()
    with contextlib.suppress(Exception):
        await process.wait()
    with contextlib.suppress(Exception):
        await asyncio.to_thread(process.cleanup)


def _close_ends(spare: Spare) -> None:
    spare.sock.close()
    spare.output.close()

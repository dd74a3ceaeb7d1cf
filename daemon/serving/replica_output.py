"""A replica's stdout and stderr: one pipe, read by the daemon on its event loop.

The sandbox gets only the pipe's write end as its fds 1 and 2, so nothing inside holds
a descriptor of a host file. `OutputPump` reads the other end in chunks of at most
CHUNK bytes and hands them to a sink (daemon/serving/replica_logs.py writes them off the loop).
A flood costs the loop a bounded amount of work: past `rate_bytes_per_s` in one second
the pump stops reading until the second is over, so the pipe fills and the flooding
processes' own writes wait (their replica slows down; nothing else does).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import Protocol

log = logging.getLogger(__name__)

__all__ = ["CHUNK", "NoSink", "OutputPump", "OutputSink", "StderrSink"]

CHUNK = 1 << 16  # bytes per read: one pipe buffer
WINDOW_S = 1.0  # the rate is counted per window
DRAIN_GRACE_S = 5.0  # after the replica exited, reading ends by then even without EOF


class OutputSink(Protocol):
    def write(self, data: bytes) -> None: ...
    def close(self) -> None: ...


class StderrSink:
    """Development and tests without a log writer: the output joins the daemon's stderr."""

    def write(self, data: bytes) -> None:
        with contextlib.suppress(OSError):
            os.write(2, data)

    def close(self) -> None:
        pass


class NoSink:
    """A parked spare's output goes nowhere yet (it writes nothing before its exec), and
    it is no replica with a log: `OutputPump.take_sink` gives it one at release."""

    def write(self, data: bytes) -> None:
        pass

    def close(self) -> None:
        pass


class OutputPump:
    """`write_fd` goes to the sandbox as fds 1 and 2; call `release_write_end` once the
    process is started, then `start`. Reads until end of file (every writer gone)."""

    def __init__(self, sink: OutputSink, rate_bytes_per_s: int, label: str) -> None:
        self.sink = sink
        self.rate = rate_bytes_per_s
        self.label = label
        self.read_fd, self.write_fd = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        os.set_blocking(self.write_fd, True)  # the sandbox's writes wait when it is full
        self.throttled = 0  # windows in which the replica wrote more than the rate
        self._budget = rate_bytes_per_s
        self._window_end = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._paused: asyncio.TimerHandle | None = None
        self.closed = False

    def release_write_end(self) -> None:
        """The daemon's copy of the write end: closed once the sandbox has its own."""
        if self.write_fd >= 0:
            os.close(self.write_fd)
            self.write_fd = -1

    def take_sink(self, other: OutputPump) -> None:
        """Before start: send this pipe's output where `other` would (its sink, rate and
        label); `other`'s own pipe is closed, its sink now ours."""
        self.sink, self.rate, self._budget, self.label = (
            other.sink,
            other.rate,
            other.rate,
            other.label,
        )
        other.sink = NoSink()
        other.close()

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._window_end = self._loop.time() + WINDOW_S
        self._loop.add_reader(self.read_fd, self._readable)

    def finish(self) -> None:
        """The replica exited: read what is left, but stop after DRAIN_GRACE_S."""
        if self._loop is not None and not self.closed:
            self._loop.call_later(DRAIN_GRACE_S, self.close)
        elif self._loop is None:
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.release_write_end()
        if self._paused is not None:
            self._paused.cancel()
        if self._loop is not None:
            self._loop.remove_reader(self.read_fd)
        os.close(self.read_fd)
        self.sink.close()
        if self.throttled:
            log.info("%s: output was throttled in %d second(s)", self.label, self.throttled)

    def _readable(self) -> None:
        assert self._loop is not None
        now = self._loop.time()
        if now >= self._window_end:
            self._budget, self._window_end = self.rate, now + WINDOW_S
        try:
            data = os.read(self.read_fd, min(CHUNK, max(1, self._budget)))
        except BlockingIOError:
            return
        except OSError as exc:
            log.warning("%s: reading its output failed: %s", self.label, exc)
            data = b""
        if not data:
            self.close()
            return
        self.sink.write(data)
        self._budget -= len(data)
        if self._budget <= 0:
            self._pause(self._window_end)

    def _pause(self, until: float) -> None:
        """Over the rate: stop reading for the rest of the window (the pipe fills up)."""
        assert self._loop is not None
        if self.throttled == 0:
            log.warning("%s writes more than %d bytes/s of output: throttled", self.label,
                        self.rate)  # fmt: skip
        self.throttled += 1
        self._loop.remove_reader(self.read_fd)
        self._paused = self._loop.call_at(until, self._resume)

    def _resume(self) -> None:
        self._paused = None
        if not self.closed and self._loop is not None:
            self._loop.add_reader(self.read_fd, self._readable)

"""The supervisor's wait for readable descriptors and signals (runtimes/arbiter.py's
main loop).

Standard library only, Python 3.8+; loaded by path like the arbiter. It imports only
C modules (select, _signal), not selectors or signal, whose enums cost milliseconds at
start-up.
"""

from __future__ import annotations

import _signal
import os
import select

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_WAKEUP = object()  # the data of the signal wakeup pipe's read end


class Poller:
    """select.poll with a value per fd: the little of `selectors` the loop needs."""

    def __init__(self) -> None:
        self._poll = select.poll()
        self._data: dict[int, Any] = {}

    def register(self, fd: int, data: Any) -> None:
        self._poll.register(fd, select.POLLIN)
        self._data[fd] = data

    def unregister(self, fd: int) -> None:
        self._poll.unregister(fd)
        del self._data[fd]

    def fds(self) -> list[int]:
        return list(self._data)

    def catch_signals(self, signals: tuple[int, ...], caught: list[int]) -> int:
        """Append each of `signals` to `caught` as it arrives and wake select() then.
        The handlers only queue: the main loop acts. Returns the wakeup pipe's write
        end (its read end is among fds(); a forked child closes both)."""
        read_end, write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        _signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
        self.register(read_end, _WAKEUP)
        for sig in signals:
            _signal.signal(sig, lambda signum, _frame: caught.append(signum))
        return write_end

    def select(self, timeout: float | None) -> list[tuple[int, Any]]:
        """(fd, data) of the readable (or hung up) fds; [] after the timeout (seconds)
        or a signal (the caller then looks at what catch_signals queued)."""
        ms = None if timeout is None else max(0, int(timeout * 1000 + 0.999))
        try:
            ready = self._poll.poll(ms)
        except InterruptedError:
            return []
        found = []
        for fd, _ in ready:
            data = self._data.get(fd)
            if data is _WAKEUP:
                _drain(fd)
            elif fd in self._data:
                found.append((fd, data))
        return found


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass

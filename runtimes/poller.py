"""The supervisor's wait for readable descriptors (runtimes/arbiter.py's main loop).

Standard library only, Python 3.8+; loaded by path like the arbiter. It imports only
the C module select (not selectors, whose enums cost milliseconds at start-up).
"""

from __future__ import annotations

import select

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


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

    def select(self, timeout: float | None) -> list[tuple[int, Any]]:
        """(fd, data) of the readable (or hung up) fds; [] after the timeout (seconds)."""
        ms = None if timeout is None else max(0, int(timeout * 1000 + 0.999))
        try:
            ready = self._poll.poll(ms)
        except InterruptedError:
            return []
        return [(fd, self._data[fd]) for fd, _ in ready if fd in self._data]

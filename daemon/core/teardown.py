"""Shutdown steps, registered as the resources they release are made.

`serve()` adds a step right after it creates each resource, so a start-up that
fails half-way releases exactly what exists. The steps then run in the order of
their rank (not of registration), each one even when an earlier one failed;
every failure is logged and returned, as aiohttp's cleanup does.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

Step = Callable[[], Awaitable[object] | object]

__all__ = ["Teardown"]


@dataclass
class Teardown:
    _steps: list[tuple[int, int, str, Step]] = field(default_factory=list)

    def add(self, rank: int, name: str, step: Step) -> None:
        """Run `step` at shutdown; lower ranks run first (ties: first added first)."""
        self._steps.append((rank, len(self._steps), name, step))

    async def run(self) -> list[tuple[str, BaseException]]:
        """Run every step once; return the (name, error) of those that failed."""
        failures: list[tuple[str, BaseException]] = []
        steps, self._steps = sorted(self._steps), []
        for _rank, _order, name, step in steps:
            try:
                result = step()
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:
                log.exception("shutdown: %s failed", name)
                failures.append((name, exc))
        return failures

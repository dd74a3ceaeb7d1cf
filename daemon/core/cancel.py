"""Awaiting cleanup that a cancel must not cut short (a cancelled deploy must still stop
the replicas it started before the cancel goes on)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

__all__ = ["uncancellable"]

T = TypeVar("T")


async def uncancellable(aw: Awaitable[T]) -> T:
    """Await `aw` to its end even if the caller is cancelled meanwhile (cleanup that must
    finish); the caller's CancelledError is raised afterwards."""
    fut = asyncio.ensure_future(aw)
    cancelled = False
    while True:
        try:
            result = await asyncio.shield(fut)
        except asyncio.CancelledError:
            if fut.done():
                raise
            cancelled = True
            continue
        if cancelled:
            raise asyncio.CancelledError
        return result

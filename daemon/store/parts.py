"""What the store's table mixins (`store_keys`, `store_account`) may rely on from
``daemon.store.database.Store``: its connection, its lock and its transaction helpers."""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

import apsw

from daemon.core.models import Event

__all__ = ["StoreParts"]


class StoreParts:
    """Declared here for the type checker; ``Store`` provides them at run time."""

    _lock: threading.RLock
    _db: apsw.Connection

    if TYPE_CHECKING:

        def _tx(self) -> AbstractContextManager[None]: ...
        def _rows(self, sql: str, args: Any = ()) -> list[dict[str, Any]]: ...
        def _one(self, sql: str, args: Any = ()) -> dict[str, Any]: ...
        def _insert_event(self, script_id: int, event: Event) -> None: ...

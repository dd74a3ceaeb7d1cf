"""The deploy context: what the lifecycle, the deployer, recovery and the admin API share."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from daemon.build.builder import Builder
from daemon.build.catalogue import Catalogue
from daemon.config.daemon_config import Config
from daemon.keys.api_key import KeyRecord
from daemon.keys.checker import KeyChecker
from daemon.lifecycle.hooks import LifecycleHooks, NoHooks
from daemon.serving.target import Runner
from daemon.store.database import Store
from daemon.store.state_dir import StateDir

T = TypeVar("T")


@dataclass
class Context:
    """What the lifecycle, the deployer, the admin API and the gateway share.

    `keys` is the gateway's API-key checker (its cache lives for the process): the
    admin API calls `ctx.keys.invalidate_key(key_id)` when it deletes a key; a script
    that stops serving (undeploy, delete) has its keys forgotten by the runner's
    routes (daemon/gateway/serving_table.py), which call `invalidate_script`.
    """

    config: Config
    store: Store
    state: StateDir
    catalogue: Catalogue
    builder: Builder
    runner: Runner
    locks: dict[int, asyncio.Lock] = field(default_factory=dict)
    tasks: dict[int, asyncio.Task[None]] = field(default_factory=dict)
    deleting: set[int] = field(default_factory=set)
    hooks: LifecycleHooks = field(default_factory=NoHooks)  # credits and emails (hooks.py)
    # replica name -> its bytes and connections through the egress proxy (daemon/egress),
    # None when it has no egress; shown with the script's replicas
    egress_counters: Callable[[str], dict[str, int] | None] | None = None
    # writes the gateway's buffered execution records (daemon/gateway/recorder.py):
    # awaited before records are read, so a call's record is there once it was answered
    flush_records: Callable[[], Awaitable[None]] | None = None
    keys: KeyChecker = field(init=False)

    def __post_init__(self) -> None:
        self.keys = KeyChecker(self._key_lookup)

    async def _key_lookup(self, key_id: str) -> KeyRecord | None:
        return await asyncio.to_thread(self.store.get_api_key, key_id)

    def lock(self, script_id: int) -> asyncio.Lock:
        return self.locks.setdefault(script_id, asyncio.Lock())

    async def db(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(fn, *args)

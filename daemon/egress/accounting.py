"""Per-replica accounting: bytes to and from the outside, and the limit on concurrent
connections (a script cannot hold more than N of the proxy's connections open: its
own connections to the proxy plus the idle upstream connections kept for it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


class ConnectionLimitReached(Exception):
    pass


class IdleConnections(Protocol):
    """A channel's pool of idle upstream connections (`pool.IdlePool`)."""

    def close_oldest(self) -> bool: ...


@dataclass
class ReplicaAccount:
    """Counters of one replica. `bytes_out` is what the replica sent upstream, `bytes_in`
    what came back, both as seen on the upstream side (TLS framing excluded when the
    proxy intercepts, since it counts what it relays). `idle_connections`: upstream
    connections kept idle in the pools of the replica's channels (`pools`)."""

    max_connections: int
    open_connections: int = 0
    connections_total: int = 0
    bytes_out: int = 0
    bytes_in: int = 0
    idle_connections: int = 0
    pools: list[IdleConnections] = field(default_factory=list, repr=False)

    def open_connection(self) -> None:
        if self.open_connections >= self.max_connections:
            raise ConnectionLimitReached(
                f"egress: connection limit reached ({self.max_connections} open connections"
                " per replica, egress.max_connections_per_replica)"
            )
        if self.open_connections + self.idle_connections >= self.max_connections:
            self._close_an_idle_one()  # the script's own connections come first
        self.open_connections += 1
        self.connections_total += 1

    def close_connection(self) -> None:
        self.open_connections -= 1

    def count(self, sent: int, received: int) -> None:
        self.bytes_out += sent
        self.bytes_in += received

    def _close_an_idle_one(self) -> None:
        for pool in self.pools:
            if pool.close_oldest():
                return

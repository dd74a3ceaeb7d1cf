"""Idle upstream connections of one channel, left by client connections that ended
(while one lives it keeps its own: `upstreams.Place`), for the next client connection
to the same place: scripts mostly open a connection per call (`requests.get` without
a Session, Node's fetch), and each new CONNECT would otherwise pay a full upstream
TCP and TLS handshake.

A connection is only handed to a request whose target passed the policy check and
resolution (`check_target`) and whose key matches: the checked address and port it
is connected to, the TLS context that verified it (None for plain TCP) and the
server name it was verified for. A pool belongs to one channel, never shared
between replicas or workers. It keeps at most `MAX_IDLE` connections; each is
closed `IDLE_TIMEOUT` seconds after it went idle (one timer of the loop per pool,
not one per connection), and all of them when the channel closes.

Idle connections count towards the replica's connection limit with its client
connections (`ReplicaAccount`): one is only kept while there is room, and the
oldest of a pool of the replica is closed to make room for a new client connection."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Hashable

from daemon.egress.accounting import ReplicaAccount
from daemon.egress.upstream import Target
from daemon.egress.wire import HttpSide
from daemon.metrics.instruments import EgressMeter

MAX_IDLE = 8  # idle upstream connections per channel
# Seconds an idle upstream connection is kept: well under common servers' keep-alive
# (a server that closes first is seen at the next take, or the request is retried).
IDLE_TIMEOUT = 15.0

# (address, port, TLS context, server name): the address as text, whose hash the
# string keeps (an ip_address object's hash is a Python method, run at each lookup).
PoolKey = tuple[str, int, ssl.SSLContext | None, str | None]


def pool_key(target: Target, tls: ssl.SSLContext | None) -> PoolKey:
    """What makes two connections to `target` interchangeable."""
    name = target.tls_name if tls is not None else None
    return (str(target.address), target.port, tls, name)


class IdlePool:
    def __init__(
        self,
        account: ReplicaAccount,
        max_idle: int = MAX_IDLE,
        timeout: float = IDLE_TIMEOUT,
        meter: EgressMeter | None = None,
    ) -> None:
        self.account = account
        self.meter = meter  # counts connections opened and taken from the pool
        self.max_idle = max_idle
        self.timeout = timeout
        # Per key, oldest first (a take gives the newest: the likeliest still open). A
        # key's list stays when it empties (no list made per request); the timer
        # drops the empty ones.
        # (Each side holds the time it went idle: `idle_since`.)
        self._idle: dict[Hashable, list[HttpSide]] = {}
        self.count = 0
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False
        account.pools.append(self)

    def take(self, key: PoolKey) -> HttpSide | None:
        """An idle connection under `key` that its server has not closed, or None."""
        entries = self._idle.get(key)
        while entries:
            side = entries.pop()
            self.count -= 1
            self.account.idle_connections -= 1
            if side.at_eof:
                side.close()
                continue
            side.reused = True
            if self.meter is not None:
                self.meter.upstream_pooled.inc()
            return side
        return None

    def opened(self) -> None:
        """A new upstream connection was opened for want of an idle one (counted)."""
        if self.meter is not None:
            self.meter.upstream_new.inc()

    def put(self, side: HttpSide) -> None:
        """Keep a connection whose exchange ended cleanly (else it is closed)."""
        key = side.pool_key
        account = self.account
        if (
            self._closed
            or key is None
            or side.at_eof
            # the replica's connections and idle ones within its limit
            or account.open_connections + account.idle_connections >= account.max_connections
        ):
            side.close()
            return
        if self.count >= self.max_idle:
            self.close_oldest()
        loop = side.loop
        side.idle_since = now = loop.time()
        entries = self._idle.get(key)
        if entries is None:
            entries = self._idle[key] = []
        entries.append(side)
        self.count += 1
        account.idle_connections += 1
        if self._timer is None:
            self._timer = loop.call_at(now + self.timeout, self._expire)

    def close_oldest(self) -> bool:
        """Close the connection idle the longest; False when there is none."""
        oldest: Hashable | None = None
        since = 0.0
        for key, entries in self._idle.items():
            if entries and (oldest is None or entries[0].idle_since < since):
                oldest, since = key, entries[0].idle_since
        if oldest is None:
            return False
        self._idle[oldest].pop(0).close()
        self.count -= 1
        self.account.idle_connections -= 1
        return True

    def close(self) -> None:
        """Close every idle connection; nothing is kept afterwards (the channel closed)."""
        self._closed = True
        self.close_idle()
        if self in self.account.pools:
            self.account.pools.remove(self)

    def close_idle(self) -> None:
        for entries in self._idle.values():
            for side in entries:
                side.close()
        self.account.idle_connections -= self.count
        self.count = 0
        self._idle.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def sides(self) -> list[HttpSide]:
        """The idle connections, oldest first per key."""
        return [side for entries in self._idle.values() for side in entries]

    def _expire(self) -> None:
        """The timer: close what has been idle for `timeout`, then wait for the next."""
        self._timer = None
        loop = asyncio.get_running_loop()
        # (a timer may fire up to the clock's resolution early)
        deadline = loop.time() - self.timeout + 0.001
        next_due: float | None = None
        for key in list(self._idle):
            entries = self._idle[key]
            while entries and entries[0].idle_since <= deadline:
                entries.pop(0).close()
                self.count -= 1
                self.account.idle_connections -= 1
            if not entries:
                del self._idle[key]
            elif next_due is None or entries[0].idle_since < next_due:
                next_due = entries[0].idle_since
        if next_due is not None:
            self._timer = loop.call_at(next_due + self.timeout, self._expire)

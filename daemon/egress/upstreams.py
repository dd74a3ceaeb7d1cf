"""Where a client connection's requests go: `PlainUpstreams` for the absolute URLs of
a plain-HTTP client (each host:port checked by the policy the first time the client
connection names it), `PinnedUpstream` for the checked targets of an intercepted
CONNECT.

While the client connection lives, it keeps the upstream connection it used last for
each place (its next request needs no pool, which costs its lookups on every kept-
alive request); when it ends (`leave`), those go to the channel's pool of idle
connections (`IdlePool`), for the next client connection to the same place. A
request takes the kept connection, else an idle one of the pool to one of the
checked addresses, else opens a new connection to them, and stays on the address
that answered. A kept-alive connection whose server closed it is reopened to the
same address; so is, once, an idempotent request that a reused connection failed
before any answer (`reopen`, called by the relay). Only a connection whose exchange
ended cleanly is kept."""

from __future__ import annotations

import ssl

from daemon.egress.policy import EgressPolicy
from daemon.egress.pool import IdlePool, PoolKey, pool_key
from daemon.egress.resolver import Resolver
from daemon.egress.targets import RequestTarget
from daemon.egress.tls import keep_session
from daemon.egress.upstream import Target, check_target, connect
from daemon.egress.wire import HttpSide

# The host:port places a plain-HTTP client connection remembers as checked (each
# with the upstream connection it keeps, if any).
MAX_PLACES_PER_CLIENT = 4


class Place:
    """The checked addresses of one host:port, with TLS or without, for one client
    connection."""

    def __init__(self, targets: list[Target], tls: ssl.SSLContext | None, pool: IdlePool) -> None:
        self.tls = tls
        self.pool = pool
        self._keyed: list[tuple[Target, PoolKey]] = [(t, pool_key(t, tls)) for t in targets]
        self._kept: HttpSide | None = None

    def idle(self) -> HttpSide | None:
        """The kept connection, else an idle one of the pool to one of the addresses,
        if its server has not closed it."""
        side = self._kept
        if side is not None:
            self._kept = None
            if not side.at_eof:
                side.reused = True
                return side
            side.close()
        for keyed in self._keyed:
            side = self.pool.take(keyed[1])
            if side is not None:
                if len(self._keyed) > 1:
                    self._keyed = [keyed]  # once one answered, stay on it
                return side
        return None

    async def open(self) -> HttpSide:
        answered, side = await connect([t for t, _ in self._keyed], self.tls, _response_side)
        self.pool.opened()
        keyed = (answered, pool_key(answered, self.tls))
        self._keyed = [keyed]
        side.pool_key = keyed[1]
        return side

    def release(self, side: HttpSide, reusable: bool) -> None:
        """A connection whose exchange is over: kept if it ended cleanly and the server
        keeps it, else closed."""
        _keep_session(side)
        if not reusable or side.at_eof:
            side.close()
            return
        if self._kept is not None:
            self.pool.put(self._kept)
        self._kept = side

    def leave(self) -> None:
        """The client connection ended: its kept connection to the pool."""
        side, self._kept = self._kept, None
        if side is not None:
            self.pool.put(side)


class PlainUpstreams:
    def __init__(
        self, policy: EgressPolicy, resolver: Resolver, tls: ssl.SSLContext, pool: IdlePool
    ) -> None:
        self.policy = policy
        self.resolver = resolver
        self.tls = tls  # for absolute https:// URLs
        self.pool = pool
        self._places: dict[tuple[str, str, int], Place] = {}

    def idle(self, target: RequestTarget) -> HttpSide | None:
        """An idle connection to a place this client connection had checked already."""
        place = self._places.get(_key(target))
        return None if place is None else place.idle()

    async def get(self, target: RequestTarget) -> HttpSide:
        place = await self._place(target)
        return place.idle() or await place.open()

    async def reopen(self, target: RequestTarget) -> HttpSide:
        return await (await self._place(target)).open()

    def release(self, target: RequestTarget, side: HttpSide, reusable: bool) -> None:
        place = self._places.get(_key(target))
        if place is not None:
            place.release(side, reusable)
        elif reusable:
            _keep_session(side)
            self.pool.put(side)  # (which closes it if its server did)
        else:
            side.close()

    def leave(self) -> None:
        for place in self._places.values():
            place.leave()
        self._places.clear()

    async def _place(self, target: RequestTarget) -> Place:
        key = _key(target)
        place = self._places.get(key)
        if place is None:
            targets = await check_target(self.policy, self.resolver, target.host, target.port)
            place = Place(targets, self.tls if target.scheme == "https" else None, self.pool)
            if len(self._places) >= MAX_PLACES_PER_CLIENT:
                self._places.pop(next(iter(self._places))).leave()
            self._places[key] = place
        return place


class PinnedUpstream:
    """The checked addresses of one CONNECT: every request inside goes there."""

    def __init__(self, targets: list[Target], tls: ssl.SSLContext | None, pool: IdlePool) -> None:
        self.place = Place(targets, tls, pool)

    def idle(self, target: RequestTarget) -> HttpSide | None:
        return self.place.idle()

    async def get(self, target: RequestTarget) -> HttpSide:
        return self.place.idle() or await self.place.open()

    async def reopen(self, target: RequestTarget) -> HttpSide:
        return await self.place.open()

    def release(self, target: RequestTarget, side: HttpSide, reusable: bool) -> None:
        self.place.release(side, reusable)

    def leave(self) -> None:
        self.place.leave()


def _keep_session(side: HttpSide) -> None:
    """The TLS session of an upstream connection, kept once it has answered (its
    server's tickets have come), for the next connection to the same name."""
    if not side.session_kept:
        side.session_kept = True
        if side.transport is not None:
            keep_session(side.transport.get_extra_info("ssl_object"))


def _response_side() -> HttpSide:
    return HttpSide(requests=False)


def _key(target: RequestTarget) -> tuple[str, str, int]:
    # (an absolute URL's host, the only kind these targets have, is lowercased already)
    return (target.scheme, target.host, target.port)

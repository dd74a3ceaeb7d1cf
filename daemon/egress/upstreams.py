"""Where a client connection's requests go, over its channel's pool of idle upstream
connections (`IdlePool`): `PlainUpstreams` for the absolute URLs of a plain-HTTP
client (each host:port checked by the policy the first time the client connection
names it), `PinnedUpstream` for the checked targets of an intercepted CONNECT.

Either takes an idle connection to one of the checked addresses when the pool has
one, else opens a new connection to them, and stays on the address that answered.
A kept-alive connection whose server closed it is reopened to the same address;
so is, once, an idempotent request that a reused connection failed before any
answer (`reopen`, called by the relay). A connection goes back to the pool only
when its exchange ended cleanly."""

from __future__ import annotations

import ssl

from daemon.egress.policy import EgressPolicy
from daemon.egress.pool import IdlePool, PoolKey, pool_key
from daemon.egress.resolver import Resolver
from daemon.egress.targets import RequestTarget
from daemon.egress.tls import keep_session
from daemon.egress.upstream import Target, check_target, connect
from daemon.egress.wire import HttpSide

# The host:port places a plain-HTTP client connection remembers as checked.
MAX_PLACES_PER_CLIENT = 16


class Place:
    """The checked addresses of one host:port, with TLS or without."""

    def __init__(self, targets: list[Target], tls: ssl.SSLContext | None, pool: IdlePool) -> None:
        self.tls = tls
        self.pool = pool
        self._keyed: list[tuple[Target, PoolKey]] = [(t, pool_key(t, tls)) for t in targets]

    def idle(self) -> HttpSide | None:
        """An idle connection of the pool to one of the addresses, if there is one."""
        for keyed in self._keyed:
            side = self.pool.take(keyed[1])
            if side is not None:
                self._keyed = [keyed]  # once one answered, stay on it
                return side
        return None

    async def open(self) -> HttpSide:
        answered, side = await connect([t for t, _ in self._keyed], self.tls, _response_side)
        keyed = (answered, pool_key(answered, self.tls))
        self._keyed = [keyed]
        side.pool_key = keyed[1]
        return side


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
        release(self.pool, side, reusable)

    async def _place(self, target: RequestTarget) -> Place:
        key = _key(target)
        place = self._places.get(key)
        if place is None:
            targets = await check_target(self.policy, self.resolver, target.host, target.port)
            place = Place(targets, self.tls if target.scheme == "https" else None, self.pool)
            if len(self._places) >= MAX_PLACES_PER_CLIENT:
                del self._places[next(iter(self._places))]
            self._places[key] = place
        return place


class PinnedUpstream:
    """The checked addresses of one CONNECT: every request inside goes there."""

    def __init__(self, targets: list[Target], tls: ssl.SSLContext | None, pool: IdlePool) -> None:
        self.place = Place(targets, tls, pool)
        self.pool = pool

    def idle(self, target: RequestTarget) -> HttpSide | None:
        return self.place.idle()

    async def get(self, target: RequestTarget) -> HttpSide:
        return self.place.idle() or await self.place.open()

    async def reopen(self, target: RequestTarget) -> HttpSide:
        return await self.place.open()

    def release(self, target: RequestTarget, side: HttpSide, reusable: bool) -> None:
        release(self.pool, side, reusable)


def release(pool: IdlePool, side: HttpSide, reusable: bool) -> None:
    """An upstream connection whose exchange is over: back to the pool if it ended
    cleanly and the server keeps it, else closed."""
    _keep_session(side)
    if reusable and not side.at_eof:
        pool.put(side)
    else:
        side.close()


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

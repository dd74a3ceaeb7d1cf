"""Where a client connection's requests go: `PlainUpstreams` opens (and keeps alive)
one connection per host:port a plain-HTTP client talks to, each checked by the policy
when it is opened; `PinnedUpstream` is the one checked TLS target of an intercepted
CONNECT, reopened to the same address if the server closes it."""

from __future__ import annotations

import ssl

from daemon.egress.policy import EgressPolicy
from daemon.egress.resolver import Resolver
from daemon.egress.upstream import Target, check_target, connect
from daemon.egress.wire import HttpSide

# A plain-HTTP client connection keeps at most this many idle upstream connections.
MAX_IDLE_PER_CLIENT = 4


class PlainUpstreams:
    def __init__(self, policy: EgressPolicy, resolver: Resolver) -> None:
        self.policy = policy
        self.resolver = resolver
        self._idle: dict[tuple[str, int], HttpSide] = {}

    async def get(self, host: str, port: int) -> HttpSide:
        side = self._idle.pop((host.lower(), port), None)
        if side is not None and not side.at_eof:
            return side
        if side is not None:
            side.close()
        targets = await check_target(self.policy, self.resolver, host, port)
        _, reader, writer = await connect(targets, tls=None)
        return HttpSide(reader, writer, requests=False)

    def release(self, host: str, port: int, side: HttpSide, reusable: bool) -> None:
        if not reusable or side.at_eof:
            side.close()
            return
        key = (host.lower(), port)
        old = self._idle.pop(key, None)
        if old is not None:
            old.close()
        if len(self._idle) >= MAX_IDLE_PER_CLIENT:
            self._idle.pop(next(iter(self._idle))).close()
        self._idle[key] = side

    def close_all(self) -> None:
        for side in self._idle.values():
            side.close()
        self._idle.clear()


class PinnedUpstream:
    def __init__(self, target: Target, tls: ssl.SSLContext, first: HttpSide) -> None:
        self.target = target
        self.tls = tls
        self._idle: HttpSide | None = first

    async def get(self, host: str, port: int) -> HttpSide:
        side, self._idle = self._idle, None
        if side is not None and not side.at_eof:
            return side
        if side is not None:
            side.close()
        _, reader, writer = await connect([self.target], tls=self.tls)
        return HttpSide(reader, writer, requests=False)

    def release(self, host: str, port: int, side: HttpSide, reusable: bool) -> None:
        if not reusable or side.at_eof:
            side.close()
            return
        if self._idle is not None:
            self._idle.close()
        self._idle = side

    def close_all(self) -> None:
        if self._idle is not None:
            self._idle.close()
            self._idle = None

"""Where a client connection's requests go: `PlainUpstreams` opens (and keeps alive)
one connection per host:port a plain-HTTP client talks to, each checked by the policy
when it is opened; `PinnedUpstream` is the one checked TLS target of an intercepted
CONNECT, reopened to the same address if the server closes it."""

from __future__ import annotations

import ssl

from daemon.egress.policy import EgressPolicy
from daemon.egress.resolver import Resolver
from daemon.egress.targets import RequestTarget
from daemon.egress.tls import keep_session
from daemon.egress.upstream import Target, check_target, connect
from daemon.egress.wire import HttpSide

# A plain-HTTP client connection keeps at most this many idle upstream connections.
MAX_IDLE_PER_CLIENT = 4


class PlainUpstreams:
    def __init__(self, policy: EgressPolicy, resolver: Resolver, tls: ssl.SSLContext) -> None:
        self.policy = policy
        self.resolver = resolver
        self.tls = tls  # for absolute https:// URLs
        self._idle: dict[tuple[str, str, int], HttpSide] = {}

    def idle(self, target: RequestTarget) -> HttpSide | None:
        """The kept-alive connection to the target's host:port, if one is still open."""
        return _still_open(self._idle.pop(_key(target), None))

    async def get(self, target: RequestTarget) -> HttpSide:
        side = self.idle(target)
        if side is not None:
            return side
        targets = await check_target(self.policy, self.resolver, target.host, target.port)
        tls = self.tls if target.scheme == "https" else None
        _, side = await connect(targets, tls, _response_side)
        return side

    def release(self, target: RequestTarget, side: HttpSide, reusable: bool) -> None:
        _keep_session(side)
        if not reusable or side.at_eof:
            side.close()
            return
        key = _key(target)
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


def _still_open(side: HttpSide | None) -> HttpSide | None:
    """A kept-alive connection, unless its server closed it meanwhile."""
    if side is not None and side.at_eof:
        side.close()
        return None
    return side


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


class PinnedUpstream:
    """The checked addresses of one CONNECT: every request inside goes there."""

    def __init__(self, targets: list[Target], tls: ssl.SSLContext | None) -> None:
        self.targets = targets
        self.tls = tls
        self._idle: HttpSide | None = None

    def idle(self, target: RequestTarget) -> HttpSide | None:
        side, self._idle = self._idle, None
        return _still_open(side)

    async def get(self, target: RequestTarget) -> HttpSide:
        side = self.idle(target)
        if side is not None:
            return side
        answered, side = await connect(self.targets, self.tls, _response_side)
        self.targets = [answered]  # once one answered, stay on it
        return side

    def release(self, target: RequestTarget, side: HttpSide, reusable: bool) -> None:
        _keep_session(side)
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

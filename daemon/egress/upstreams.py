"""Where a client connection's requests go: `PlainUpstreams` opens (and keeps alive)
one connection per host:port a plain-HTTP client talks to, each checked by the policy
when it is opened; `PinnedUpstream` is the one checked TLS target of an intercepted
CONNECT, reopened to the same address if the server closes it."""

from __future__ import annotations

import ssl

import h11

from daemon.egress.peer import HttpPeer
from daemon.egress.policy import EgressPolicy
from daemon.egress.resolver import Resolver
from daemon.egress.upstream import Target, UpstreamError, check_target, connect

# A plain-HTTP client connection keeps at most this many idle upstream connections.
MAX_IDLE_PER_CLIENT = 4


class PlainUpstreams:
    def __init__(self, policy: EgressPolicy, resolver: Resolver) -> None:
        self.policy = policy
        self.resolver = resolver
        self._idle: dict[tuple[str, int], HttpPeer] = {}

    async def get(self, host: str, port: int) -> HttpPeer:
        key = (host.lower(), port)
        peer = self._idle.pop(key, None)
        if peer is not None and not peer.reader.at_eof():
            return peer
        if peer is not None:
            peer.close()
        targets = await check_target(self.policy, self.resolver, host, port)
        _, reader, writer = await connect(targets, tls=None)
        return HttpPeer(h11.CLIENT, reader, writer)

    def release(self, host: str, port: int, peer: HttpPeer) -> None:
        if not peer.reusable or peer.writer.is_closing():
            peer.close()
            return
        peer.conn.start_next_cycle()
        key = (host.lower(), port)
        old = self._idle.pop(key, None)
        if old is not None:
            old.close()
        if len(self._idle) >= MAX_IDLE_PER_CLIENT:
            self._idle.pop(next(iter(self._idle))).close()
        self._idle[key] = peer

    def close_all(self) -> None:
        for peer in self._idle.values():
            peer.close()
        self._idle.clear()


class PinnedUpstream:
    def __init__(self, target: Target, tls: ssl.SSLContext, first: HttpPeer) -> None:
        self.target = target
        self.tls = tls
        self._idle: HttpPeer | None = first

    async def get(self, host: str, port: int) -> HttpPeer:
        peer, self._idle = self._idle, None
        if peer is not None and not peer.reader.at_eof():
            return peer
        if peer is not None:
            peer.close()
        _, reader, writer = await connect([self.target], tls=self.tls)
        return HttpPeer(h11.CLIENT, reader, writer)

    def release(self, host: str, port: int, peer: HttpPeer) -> None:
        if not peer.reusable or peer.writer.is_closing():
            peer.close()
            return
        peer.conn.start_next_cycle()
        if self._idle is not None:
            self._idle.close()
        self._idle = peer

    def close_all(self) -> None:
        if self._idle is not None:
            self._idle.close()
            self._idle = None


__all__ = ["PinnedUpstream", "PlainUpstreams", "UpstreamError"]

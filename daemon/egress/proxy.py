"""The egress proxy: one unix socket per replica (the socket a connection arrives on
says which replica it is, so no script can pass itself off as another), plain HTTP
forwarding, and CONNECT, either intercepted with a leaf from the state dir's CA (the
requests inside are relayed and logged one by one) or spliced as an opaque tunnel
(logged as host, port, bytes and duration)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from daemon.egress.accounting import ConnectionLimitReached, ReplicaAccount
from daemon.egress.ca import CertificateAuthority
from daemon.egress.exchange import answer
from daemon.egress.httplog import Redactor, RequestLog
from daemon.egress.inline import InlineRelay
from daemon.egress.messages import Head, ProtocolError
from daemon.egress.policy import EgressPolicy, EgressRefused
from daemon.egress.pool import IDLE_TIMEOUT, IdlePool
from daemon.egress.resolver import ResolveError, Resolver, SystemResolver
from daemon.egress.targets import absolute_target, tunnel_target
from daemon.egress.tunnel import TLS_HANDSHAKE, first_byte, parse_authority, pipes, splice
from daemon.egress.upstream import Target, UpstreamError, check_target, connect
from daemon.egress.upstreams import PinnedUpstream, PlainUpstreams
from daemon.egress.wire import HttpSide
from daemon.metrics.instruments import EgressMeter

log = logging.getLogger(__name__)

DEFAULT_MAX_CONNECTIONS = 64
TLS_HANDSHAKE_TIMEOUT = 10.0


@dataclass(frozen=True)
class ChannelSettings:
    """What the proxy enforces for one replica."""

    policy: EgressPolicy
    inspect: bool = True
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    script: str = ""  # the replica's script, for the metrics (empty: the channel's name)
    idle_timeout: float = IDLE_TIMEOUT  # seconds an idle upstream connection is kept


class EgressProxy:
    """Shared parts (CA, upstream TLS, resolver) and the open channels."""

    def __init__(
        self,
        ca: CertificateAuthority | None,
        upstream_tls: ssl.SSLContext,
        resolver: Resolver | None = None,
    ) -> None:
        self.ca = ca
        self.upstream_tls = upstream_tls
        self.resolver: Resolver = resolver or SystemResolver()
        self.channels: dict[str, Channel] = {}

    async def open_channel(
        self,
        name: str,
        socket_path: Path,
        settings: ChannelSettings,
        account: ReplicaAccount | None = None,
    ) -> Channel:
        """`account`: one shared with the replica's other channels (a channel per worker
        keeps each worker's log apart; bytes and the connection limit are the replica's)."""
        if name in self.channels:
            raise ValueError(f"egress: a channel named {name!r} is already open")
        channel = Channel(self, name, socket_path, settings, account)
        await channel.start()
        self.channels[name] = channel
        return channel

    async def close_channel(self, name: str) -> None:
        channel = self.channels.pop(name, None)
        if channel is not None:
            await channel.close()

    async def close(self) -> None:
        for name in list(self.channels):
            await self.close_channel(name)


class Channel:
    """The proxy's side of one replica: its socket, its settings, its current request
    log, its account and its idle upstream connections."""

    def __init__(
        self,
        proxy: EgressProxy,
        name: str,
        socket_path: Path,
        settings: ChannelSettings,
        account: ReplicaAccount | None = None,
    ) -> None:
        self.proxy = proxy
        self.name = name
        self.socket_path = socket_path
        self.settings = settings
        self.account = account or ReplicaAccount(settings.max_connections)
        self.redactor = Redactor(settings.secrets)
        self.meter = EgressMeter(settings.script or name)
        self.log = RequestLog(self.redactor, self.meter)
        self.pool = IdlePool(self.account, timeout=settings.idle_timeout, meter=self.meter)
        self._server: asyncio.AbstractServer | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_unix_server(self._new_side, str(self.socket_path))
        # The replica's uid must connect; the directory it is bound from guards it.
        os.chmod(self.socket_path, 0o666)

    def take_log(self) -> RequestLog:
        """The log so far, replaced by a fresh one (called at a call's end)."""
        taken, self.log = self.log, RequestLog(self.redactor, self.meter)
        taken.taken()
        return taken

    def close_connections(self) -> None:
        """End every open connection (a killed worker's requests must not linger; their
        upstream connections close with them). Idle upstream connections stay: their
        exchanges had ended."""
        for task in list(self._connections):
            task.cancel()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self.close_connections()
        if self._connections:
            await asyncio.wait(list(self._connections), timeout=5)
        self.pool.close()
        self.log.publish()  # what no call took still reaches the metrics
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()

    def _new_side(self) -> HttpSide:
        return HttpSide(requests=True, on_connected=self._on_connection)

    def _on_connection(self, client: HttpSide) -> None:
        task = asyncio.ensure_future(self._handle(client))
        self._connections.add(task)
        task.add_done_callback(self._connections.discard)

    async def _handle(self, client: HttpSide) -> None:
        try:
            self.account.open_connection()
        except ConnectionLimitReached as full:
            await self._refuse_connection(client, str(full))
            return
        try:
            await self._serve(client)
        except ProtocolError as err:
            # From the script's side (upstream errors become a 502 in the relay).
            with contextlib.suppress(OSError):
                await answer(client, 400, f"egress: {err}")
        except (OSError, ssl.SSLError):
            pass
        except Exception:
            log.exception("egress: unexpected error on a connection of %s", self.name)
        finally:
            self.account.close_connection()
            client.close()

    async def _refuse_connection(self, client: HttpSide, message: str) -> None:
        try:
            event = await client.next_event()
            if isinstance(event, Head):
                self.log.refused(
                    event.method.decode(), event.target.decode(), "connections", message
                )
                await answer(client, 503, message)
        except (OSError, ProtocolError):
            pass
        finally:
            client.close()

    async def _serve(self, client: HttpSide) -> None:
        upstreams = PlainUpstreams(
            self.settings.policy, self.proxy.resolver, self.proxy.upstream_tls, self.pool
        )
        relay = InlineRelay(client, absolute_target, upstreams, lambda: self.log, self.account)
        try:
            while True:
                event = await relay.next_request()
                if not isinstance(event, Head):
                    return
                if event.method == b"CONNECT":
                    upstreams.leave()
                    await self._connect(client, event)
                    return
                if not await relay.handle(event):
                    return
        finally:
            upstreams.leave()  # what it kept idle goes to the channel's pool

    async def _connect(self, client: HttpSide, request: Head) -> None:
        authority = request.target.decode("ascii", "replace")
        if not client.upgraded:
            return  # llhttp treats CONNECT as an upgrade; anything else is malformed
        try:
            host, port = parse_authority(authority)
            targets = await check_target(self.settings.policy, self.proxy.resolver, host, port)
        except ValueError as malformed:
            await answer(client, 400, str(malformed))
            return
        except EgressRefused as refusal:
            self.log.refused("CONNECT", authority, refusal.rule, str(refusal))
            await answer(client, 403, str(refusal))
            return
        except ResolveError as err:
            await answer(client, 502, str(err))
            return
        if self.settings.inspect and self.proxy.ca is not None:
            await self._intercept(client, targets, host, port)
        else:
            await self._tunnel(client, targets, host, port)

    async def _tunnel(self, client: HttpSide, targets: list[Target], host: str, port: int) -> None:
        entry = self.log.begin_tunnel(host, port)
        started = asyncio.get_running_loop().time()
        client_end, upstream_end = pipes()
        try:
            await connect(targets, None, lambda: upstream_end)
        except UpstreamError as err:
            if entry is not None:
                entry.error = str(err)
            await answer(client, 502, str(err))
            return
        try:
            await _accept_connect(client)
            sent, received = await splice(client, client_end, upstream_end)
        finally:
            if upstream_end.transport is not None:
                upstream_end.transport.close()  # also when the script left before its 200
        self.account.count(sent, received)
        self.log.count_bytes(sent, received)
        if entry is not None:
            entry.duration_ms = round((asyncio.get_running_loop().time() - started) * 1000, 3)
            entry.bytes_out, entry.bytes_in = sent, received

    async def _intercept(
        self, client: HttpSide, targets: list[Target], host: str, port: int
    ) -> None:
        """Answer the CONNECT, then look at the first byte the client sends: a TLS
        handshake is ended here with a leaf for the host; anything else is plain HTTP
        in a tunnel (undici's proxy agent, Node's fetch, tunnels http:// that way).
        Either way the requests inside are relayed one by one to the checked address
        (an upstream that fails, certificate included, answers 502 inside). The
        client's transport has been paused since the CONNECT head (the first byte
        must stay in the socket for TLS)."""
        assert self.proxy.ca is not None
        transport = client.transport
        assert transport is not None
        await _accept_connect(client)
        first = await first_byte(transport, TLS_HANDSHAKE_TIMEOUT)
        if client.trailing or not first:
            return  # bytes sent before our 200, or nothing at all: not a client we serve
        inner = HttpSide(requests=True)
        if first == TLS_HANDSHAKE:
            context = self.proxy.ca.context_for(targets[0].tls_name)
            secured = await asyncio.get_running_loop().start_tls(
                transport,
                inner,
                context,
                server_side=True,
                ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT,
            )
            if secured is None:
                return
            inner.attach(cast(asyncio.Transport, secured))
            try:
                await self._relay_inside(inner, targets, "https", self.proxy.upstream_tls)
            finally:
                inner.close()  # the TLS transport, which closes the socket's
        else:
            transport.set_protocol(inner)
            inner.attach(transport)
            transport.resume_reading()
            await self._relay_inside(inner, targets, "http", None)

    async def _relay_inside(
        self, inner: HttpSide, targets: list[Target], scheme: str, tls: ssl.SSLContext | None
    ) -> None:
        upstream = PinnedUpstream(targets, tls, self.pool)
        target_of = tunnel_target(scheme, targets[0].host, targets[0].port)
        relay = InlineRelay(inner, target_of, upstream, lambda: self.log, self.account)
        try:
            while True:
                event = await relay.next_request()
                if not isinstance(event, Head):
                    return
                if event.method == b"CONNECT" or not await relay.handle(event):
                    return
        finally:
            upstream.leave()  # what it kept idle goes to the channel's pool


async def _accept_connect(client: HttpSide) -> None:
    client.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
    await client.flush()

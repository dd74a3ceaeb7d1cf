from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from daemon.egress.ca import CertificateAuthority
from daemon.egress.policy import EgressPolicy, HostPattern, Mode
from daemon.egress.pool import IDLE_TIMEOUT
from daemon.egress.proxy import Channel, ChannelSettings, EgressProxy
from daemon.egress.resolver import StaticResolver
from daemon.egress.upstream import upstream_context
from tests.daemon.egress.support import LoopbackRelay, Servers, start_servers

LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)
# Names the tests resolve: real loopback servers behind a name, and names that
# resolve to addresses a script must never reach.
RESOLVER_TABLE = {
    "localhost": ["127.0.0.1"],
    "api.example.test": ["127.0.0.1"],
    "svc.example.test": ["127.0.0.1"],
    "evil.example.test": ["127.0.0.1"],
    "internal.example.test": ["10.0.0.5"],
    "metadata.example.test": ["169.254.169.254"],
}


@dataclass
class EgressEnv:
    servers: Servers
    proxy: EgressProxy
    root: Path
    open: Callable[..., Awaitable[tuple[Channel, LoopbackRelay]]]


@pytest.fixture
async def egress(tmp_path: Path) -> AsyncIterator[EgressEnv]:
    servers, runners = await start_servers(tmp_path)
    proxy = EgressProxy(
        CertificateAuthority(tmp_path / "state"),
        upstream_context(servers.ca_file),
        StaticResolver(RESOLVER_TABLE),
    )
    relays: list[LoopbackRelay] = []
    count = 0

    async def open_channel(
        mode: Mode = Mode.PUBLIC,
        allow: tuple[str, ...] = (),
        networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = LOOPBACK,
        inspect: bool = True,
        secrets: dict[str, str] | None = None,
        max_connections: int = 64,
        ports: tuple[int, ...] | None = None,
        idle_timeout: float = IDLE_TIMEOUT,
    ) -> tuple[Channel, LoopbackRelay]:
        nonlocal count
        count += 1
        policy = EgressPolicy(
            mode=mode,
            allow_hosts=tuple(HostPattern.parse(a) for a in allow),
            ports=ports or (80, 443, servers.http_port, servers.https_port),
            allowed_networks=networks,
        )
        settings = ChannelSettings(
            policy, inspect, secrets or {}, max_connections, idle_timeout=idle_timeout
        )
        channel = await proxy.open_channel(f"r{count}", tmp_path / f"r{count}.sock", settings)
        relay = await LoopbackRelay(channel.socket_path).start()
        relays.append(relay)
        return channel, relay

    yield EgressEnv(servers, proxy, tmp_path, open_channel)
    for relay in relays:
        await relay.close()
    await proxy.close()
    for runner in runners:
        await runner.cleanup()

"""Name resolution for the proxy. The sandbox has no resolver of its own: the proxy
resolves every name itself, checks each address, and connects to exactly the address
it checked (no second lookup, so no DNS-rebinding window).

`Resolver` is the small protocol the proxy needs; tests inject a `StaticResolver` to
make a name resolve to a private address without touching real DNS."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

import psutil

from daemon.egress.policy import IPAddress


class ResolveError(Exception):
    """The name does not resolve; the message is shown to the script."""


class Resolver(Protocol):
    async def resolve(self, host: str, port: int) -> list[IPAddress]: ...


class SystemResolver:
    """The host's resolver (getaddrinfo in a thread, through the event loop)."""

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as err:
            raise ResolveError(f"egress: {host} does not resolve ({err.strerror})") from None
        return _unique(ipaddress.ip_address(info[4][0]) for info in infos)


class StaticResolver:
    """A fixed table of names, for tests and for pinning names in config."""

    def __init__(self, table: Mapping[str, Sequence[str]]) -> None:
        self._table = {
            name.lower(): [ipaddress.ip_address(a) for a in addrs] for name, addrs in table.items()
        }

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        found = self._table.get(host.lower().rstrip("."))
        if not found:
            raise ResolveError(f"egress: {host} does not resolve")
        return list(found)


def host_addresses() -> frozenset[IPAddress]:
    """Every address configured on this host's interfaces: a script must not reach the
    host through its public address either."""
    found: set[IPAddress] = set()
    for addrs in psutil.net_if_addrs().values():
        for addr in addrs:
            if addr.family in (socket.AF_INET, socket.AF_INET6):
                try:
                    found.add(ipaddress.ip_address(addr.address.split("%", 1)[0]))
                except ValueError:
                    continue
    return frozenset(found)


def _unique(addresses: Iterable[IPAddress]) -> list[IPAddress]:
    seen: list[IPAddress] = []
    for address in addresses:
        if address not in seen:
            seen.append(address)
    return seen

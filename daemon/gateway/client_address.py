"""Whose address a call comes from, for the key-failure throttle.

The peer's own address, or, when the peer is one of `gateway.trusted_proxies`, the
right-most `X-Forwarded-For` address that is not itself a trusted proxy (the one the
nearest trusted proxy saw). The header of any other peer is ignored: anyone can write
it. Both fronts (aiohttp's routes and the call routes' own) ask this one class.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable

__all__ = ["Network", "TrustedProxies"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedProxies:
    def __init__(self, networks: tuple[Network, ...] = ()) -> None:
        self.networks = networks

    def client(self, peer: str | None, forwarded_for: Callable[[], Iterable[str]]) -> str | None:
        """The caller's address. `forwarded_for` gives the X-Forwarded-For header's
        values; it is read only when the peer is a trusted proxy."""
        if not self.networks or peer is None or not self.trusts(peer):
            return peer  # no proxies configured: no header parsing at all
        hops = ",".join(forwarded_for()).split(",")
        for hop in reversed(hops):
            hop = hop.strip()
            if hop and not self.trusts(hop):
                # Not an address (a broken proxy): the proxy's own shared bucket.
                return hop if _is_ip(hop) else peer
        return peer

    def trusts(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        # `in` does not compare versions: an IPv6 address could "match" an IPv4 net.
        return any(ip.version == net.version and ip in net for net in self.networks)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return False
    return True

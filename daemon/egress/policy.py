"""The egress policy of one script: which hosts and ports it may reach, and which
addresses are never reachable (loopback, private, link-local, CGNAT, multicast,
unspecified, the host's own) unless the admin opened their network.

Every refusal is an `EgressRefused` whose message names the rule, the way the
script sees it in the proxy's 403 body, e.g.
`egress: 10.0.0.5 is a private address; allowed: public addresses on ports 80, 443`.
"""

from __future__ import annotations

import enum
import ipaddress
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field

from daemon.config.egress import DEFAULT_EGRESS_PORTS

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_PORTS = DEFAULT_EGRESS_PORTS

# Named ranges checked before Python's generic `is_global`, so a refusal says what
# the address is rather than just "not global". Order matters: the first match wins.
_NAMED_V4: tuple[tuple[str, str], ...] = (
    ("169.254.169.254/32", "link-local address (the cloud metadata service)"),
    ("0.0.0.0/8", "unspecified address"),
    ("127.0.0.0/8", "loopback address"),
    ("10.0.0.0/8", "private address"),
    ("172.16.0.0/12", "private address"),
    ("192.168.0.0/16", "private address"),
    ("100.64.0.0/10", "shared (CGNAT) address"),
    ("169.254.0.0/16", "link-local address"),
    ("224.0.0.0/4", "multicast address"),
    ("255.255.255.255/32", "broadcast address"),
)
_NAMED_V6: tuple[tuple[str, str], ...] = (
    ("::/128", "unspecified address"),
    ("::1/128", "loopback address"),
    ("fe80::/10", "link-local address"),
    ("fc00::/7", "private (unique local) address"),
    ("ff00::/8", "multicast address"),
)
_V4_RANGES = tuple((ipaddress.IPv4Network(net), what) for net, what in _NAMED_V4)
_V6_RANGES = tuple((ipaddress.IPv6Network(net), what) for net, what in _NAMED_V6)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")

# Characters of an IPv4 literal in any form inet_aton accepts (decimal, octal, hex,
# shortened like 127.1): a name made of these alone is read as an address, as a
# client's resolver would, so "2130706433" or "0177.0.0.1" cannot slip by as names.
_V4_LITERAL_CHARS = re.compile(r"^[0-9a-fA-FxX.]+$")


class Mode(enum.StrEnum):
    OFF = "off"
    PUBLIC = "public"
    ALLOWLIST = "allowlist"


class EgressRefused(Exception):
    """A request the policy refuses; `str()` is the message the script sees."""

    def __init__(self, message: str, rule: str) -> None:
        super().__init__(message)
        self.rule = rule


@dataclass(frozen=True)
class HostPattern:
    """One allowlist entry: `api.example.com`, `*.example.com`, optionally `:port`."""

    host: str
    port: int | None = None

    @classmethod
    def parse(cls, text: str) -> HostPattern:
        host, port = _split_pattern(text.strip().lower())
        if not host or not re.fullmatch(r"(\*\.)?[a-z0-9]([a-z0-9.-]*[a-z0-9])?", host):
            raise ValueError(
                f"allow-host {text!r} is not a host name, *.domain wildcard or either with :port"
            )
        return cls(host, port)

    def matches(self, host: str, port: int) -> bool:
        if self.port is not None and port != self.port:
            return False
        host = host.lower().rstrip(".")
        if self.host.startswith("*."):
            return host.endswith(self.host[1:])
        return host == self.host

    def __str__(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"


def _split_pattern(text: str) -> tuple[str, int | None]:
    host, sep, port = text.rpartition(":")
    if not sep:
        return text, None
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"allow-host {text!r} has a bad port {port!r}")
    return host, int(port)


@dataclass(frozen=True)
class EgressPolicy:
    """What one script may reach. `allowed_networks` and `ports` come from config,
    `mode` and `allow_hosts` from the script's runtime settings."""

    mode: Mode = Mode.PUBLIC
    allow_hosts: tuple[HostPattern, ...] = ()
    ports: tuple[int, ...] = DEFAULT_PORTS
    allowed_networks: tuple[IPNetwork, ...] = ()
    own_addresses: frozenset[IPAddress] = field(default_factory=frozenset)

    def describe_allowed(self) -> str:
        ports = ", ".join(str(p) for p in self.ports)
        if self.mode is Mode.OFF:
            return "nothing (egress is off for this script)"
        if self.mode is Mode.ALLOWLIST:
            hosts = ", ".join(str(p) for p in self.allow_hosts) or "no hosts"
            return f"{hosts} on ports {ports}"
        return f"public addresses on ports {ports}"

    def refuse(self, what: str, rule: str) -> EgressRefused:
        return EgressRefused(f"egress: {what}; allowed: {self.describe_allowed()}", rule)

    def check_target(self, host: str, port: int) -> None:
        """Check the name and port before resolving; raises EgressRefused."""
        if self.mode is Mode.OFF:
            raise self.refuse(f"{host} cannot be reached", "egress off")
        if port not in self.ports:
            raise self.refuse(f"port {port} is not allowed", "port")
        if self.mode is Mode.ALLOWLIST and not any(p.matches(host, port) for p in self.allow_hosts):
            raise self.refuse(f"{host} is not in the allowlist", "allowlist")

    def check_address(self, host: str, address: IPAddress) -> None:
        """Check one address `host` resolved to (or is); raises EgressRefused."""
        if any(address in net for net in self.allowed_networks):
            return
        what = classify(address)
        if what is None and address in self.own_addresses:
            what = "address of this host"
        if what is not None:
            shown = host if _is_plain_literal(host) else f"{host} ({address})"
            article = "an" if what[0] in "aeiou" else "a"
            raise self.refuse(f"{shown} is {article} {what}", what)


def classify(address: IPAddress) -> str | None:
    """What kind of non-global address this is, or None for a global one."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_v4(address)
        if embedded is not None:
            inner = classify(embedded)
            return f"{inner} (IPv4 inside IPv6)" if inner else None
        ranges: Iterable[tuple[IPNetwork, str]] = _V6_RANGES
    else:
        ranges = _V4_RANGES
    for net, what in ranges:
        if address in net:
            return what
    return None if address.is_global else "reserved address"


def _embedded_v4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    return None


def _is_plain_literal(host: str) -> bool:
    """An address written in its standard form (the refusal then needs no translation)."""
    try:
        ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    return True


def parse_literal(host: str) -> IPAddress | None:
    """The address a host string denotes by itself, or None for a name. IPv4 is read
    the way inet_aton reads it (decimal, octal, hex and short forms)."""
    text = host.strip("[]")
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        pass
    if not _V4_LITERAL_CHARS.match(text):
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(text))
    except OSError:
        return None


def parse_networks(cidrs: Iterable[str]) -> tuple[IPNetwork, ...]:
    try:
        return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)
    except ValueError as err:
        raise ValueError(f"egress.allowed_networks: {err}") from None

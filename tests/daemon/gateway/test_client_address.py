"""Whose address a call comes from: the peer's, or the one its trusted proxies name."""

from __future__ import annotations

import ipaddress

import pytest

from daemon.gateway.client_address import TrustedProxies

PROXIES = TrustedProxies((ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8")))


def never_read() -> list[str]:
    raise AssertionError("the header of an untrusted peer must not be read")


def test_no_proxies_configured_the_peer_is_the_client() -> None:
    assert TrustedProxies().client("10.1.2.3", never_read) == "10.1.2.3"
    assert TrustedProxies().client(None, never_read) is None


def test_an_untrusted_peer_is_the_client_whatever_it_writes() -> None:
    assert PROXIES.client("203.0.113.9", never_read) == "203.0.113.9"


@pytest.mark.parametrize(
    ("peer", "header", "client"),
    [
        ("10.0.0.1", ["198.51.100.7"], "198.51.100.7"),
        # the right-most address that is not a trusted proxy: the left one is forgeable
        ("10.0.0.1", ["1.2.3.4, 198.51.100.7, 10.0.0.2"], "198.51.100.7"),
        ("10.0.0.1", ["1.2.3.4", "198.51.100.7"], "198.51.100.7"),
        # only proxies in the chain: the peer's own bucket
        ("10.0.0.1", ["10.0.0.3, 10.0.0.2"], "10.0.0.1"),
        ("10.0.0.1", [], "10.0.0.1"),
        # not an address (a broken proxy): the proxy's own bucket
        ("10.0.0.1", ["unknown"], "10.0.0.1"),
        ("::ffff:10.0.0.1", ["198.51.100.7"], "198.51.100.7"),  # IPv4-mapped peer
        ("fd00::1", ["2001:db8::5"], "2001:db8::5"),
        ("fd00::1%eth0", ["2001:db8::5%eth0"], "2001:db8::5%eth0"),  # zone ids
    ],
)
def test_a_trusted_proxy_names_the_client(peer: str, header: list[str], client: str) -> None:
    assert PROXIES.client(peer, lambda: header) == client


def test_an_ipv6_peer_never_matches_an_ipv4_network() -> None:
    only_v4 = TrustedProxies((ipaddress.ip_network("0.0.0.0/0"),))
    assert only_v4.client("2001:db8::1", never_read) == "2001:db8::1"

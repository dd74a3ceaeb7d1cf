from __future__ import annotations

import ipaddress

import pytest

from daemon.egress.policy import (
    EgressPolicy,
    EgressRefused,
    HostPattern,
    Mode,
    classify,
    parse_literal,
    parse_networks,
)


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("8.8.8.8", None),
        ("1.1.1.1", None),
        ("2606:4700::1111", None),
        ("127.0.0.53", "loopback address"),
        ("10.255.0.1", "private address"),
        ("172.15.0.1", None),
        ("172.32.0.1", None),
        ("172.20.0.1", "private address"),
        ("100.127.255.254", "shared (CGNAT) address"),
        ("100.128.0.1", None),
        ("169.254.1.1", "link-local address"),
        ("239.1.1.1", "multicast address"),
        ("0.1.2.3", "unspecified address"),
        ("192.0.2.1", "reserved address"),
        ("240.0.0.1", "reserved address"),
        ("::", "unspecified address"),
        ("::ffff:8.8.8.8", None),
        ("::ffff:192.168.0.1", "private address (IPv4 inside IPv6)"),
        ("64:ff9b::7f00:1", "loopback address (IPv4 inside IPv6)"),
        ("2002:c0a8:0101::1", "private address (IPv4 inside IPv6)"),
        ("ff02::1", "multicast address"),
    ],
)
def test_classify(address: str, kind: str | None) -> None:
    assert classify(ipaddress.ip_address(address)) == kind


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("[::1]", "::1"),
        ("fe80::1%eth0", "fe80::1"),
        ("example.com", None),
        ("cafe.be", None),
        ("deadbeef", None),
    ],
)
def test_parse_literal(host: str, address: str | None) -> None:
    found = parse_literal(host)
    assert (str(found) if found else None) == address


def test_host_patterns() -> None:
    exact, wild, ported = (HostPattern.parse(p) for p in ("Api.X.com", "*.x.com", "y.com:8443"))
    assert exact.matches("api.x.com", 443) and exact.matches("API.x.com.", 80)
    assert not exact.matches("evil-api.x.com", 443)
    assert wild.matches("a.b.x.com", 443) and not wild.matches("x.com", 443)
    assert not wild.matches("evilx.com", 443)
    assert ported.matches("y.com", 8443) and not ported.matches("y.com", 443)
    for bad in ("", "*", "a b", "x.com:0", "x.com:http", "http://x.com", "*.*.x.com"):
        with pytest.raises(ValueError, match="allow-host"):
            HostPattern.parse(bad)


def test_refusal_messages_name_the_rule() -> None:
    policy = EgressPolicy()
    with pytest.raises(EgressRefused) as refused:
        policy.check_address("10.0.0.5", ipaddress.ip_address("10.0.0.5"))
    assert str(refused.value) == (
        "egress: 10.0.0.5 is a private address; allowed: public addresses on ports 80, 443"
    )
    with pytest.raises(EgressRefused, match="port 25 is not allowed"):
        policy.check_target("mail.example.com", 25)
    listed = EgressPolicy(Mode.ALLOWLIST, (HostPattern.parse("*.example.com"),))
    with pytest.raises(EgressRefused, match=r"allowed: \*\.example\.com on ports 80, 443"):
        listed.check_target("example.org", 443)


def test_allowed_networks_and_the_hosts_own_addresses() -> None:
    own = ipaddress.ip_address("203.0.113.7")
    policy = EgressPolicy(
        allowed_networks=parse_networks(["10.20.0.0/16"]), own_addresses=frozenset({own})
    )
    policy.check_address("internal", ipaddress.ip_address("10.20.1.1"))
    with pytest.raises(EgressRefused, match="private address"):
        policy.check_address("internal", ipaddress.ip_address("10.21.1.1"))
    public_own = ipaddress.ip_address("8.8.4.4")
    with pytest.raises(EgressRefused, match="an address of this host"):
        EgressPolicy(own_addresses=frozenset({public_own})).check_address("me", public_own)
    with pytest.raises(ValueError, match=r"egress\.allowed_networks"):
        parse_networks(["10.0.0.0/33"])

"""Every SSRF form of the issue is refused before a byte leaves, with a 403 whose body
names the rule. The loopback servers are running (and, for the literal forms, on the
very port asked for), so a check that let one through would show up as a hit."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request

import httpx
import pytest

from daemon.egress.proxy import Channel
from tests.daemon.egress.conftest import EgressEnv
from tests.daemon.egress.support import raw_request

ALLOWED = "allowed: public addresses on ports"

# (host as the script writes it, what the refusal must say)
LITERALS = [
    ("127.0.0.1", "127.0.0.1 is a loopback address"),
    ("localhost", "localhost (127.0.0.1) is a loopback address"),
    ("[::1]", "::1 is a loopback address"),
    ("0.0.0.0", "0.0.0.0 is an unspecified address"),
    ("169.254.169.254", "169.254.169.254 is a link-local address (the cloud metadata service)"),
    ("10.1.2.3", "10.1.2.3 is a private address"),
    ("172.16.0.1", "172.16.0.1 is a private address"),
    ("172.31.255.254", "172.31.255.254 is a private address"),
    ("192.168.1.1", "192.168.1.1 is a private address"),
    ("100.64.0.1", "100.64.0.1 is a shared (CGNAT) address"),
    ("[::ffff:127.0.0.1]", "::ffff:127.0.0.1 is a loopback address (IPv4 inside IPv6)"),
    ("[::ffff:10.0.0.1]", "::ffff:10.0.0.1 is a private address (IPv4 inside IPv6)"),
    ("[64:ff9b::a00:1]", "64:ff9b::a00:1 is a private address (IPv4 inside IPv6)"),
    ("[fe80::1]", "fe80::1 is a link-local address"),
    ("[fd00::1]", "fd00::1 is a private (unique local) address"),
    ("224.0.0.1", "224.0.0.1 is a multicast address"),
    ("2130706433", "2130706433 (127.0.0.1) is a loopback address"),
    ("0177.0.0.1", "0177.0.0.1 (127.0.0.1) is a loopback address"),
    ("0x7f.0.0.1", "0x7f.0.0.1 (127.0.0.1) is a loopback address"),
    ("127.1", "127.1 (127.0.0.1) is a loopback address"),
    ("012.0.0.1", "012.0.0.1 (10.0.0.1) is a private address"),
    ("internal.example.test", "internal.example.test (10.0.0.5) is a private address"),
    ("metadata.example.test", "metadata.example.test (169.254.169.254) is a link-local"),
]


async def _no_network_channel(egress: EgressEnv) -> Channel:
    channel, _ = await egress.open(networks=())
    return channel


@pytest.mark.parametrize(("host", "reason"), LITERALS)
async def test_plain_http_to_a_non_global_address_is_refused(
    egress: EgressEnv, host: str, reason: str
) -> None:
    channel = await _no_network_channel(egress)
    port = egress.servers.http_port
    status, body = await raw_request(
        channel.socket_path,
        f"GET http://{host}:{port}/echo HTTP/1.1\nHost: {host}:{port}\nConnection: close\n",
    )
    assert status == 403
    assert body.startswith(f"egress: {reason}") and ALLOWED in body
    assert egress.servers.hits == []
    (refusal,) = channel.take_log().refusals
    assert refusal.target == f"http://{host}:{port}/echo" and reason in refusal.message


@pytest.mark.parametrize(("host", "reason"), LITERALS)
async def test_connect_to_a_non_global_address_is_refused(
    egress: EgressEnv, host: str, reason: str
) -> None:
    channel = await _no_network_channel(egress)
    port = egress.servers.https_port
    status, body = await raw_request(
        channel.socket_path, f"CONNECT {host}:{port} HTTP/1.1\nHost: {host}:{port}\n"
    )
    assert status == 403 and body.startswith(f"egress: {reason}")
    assert channel.take_log().refusals[0].method == "CONNECT"


async def test_connect_to_port_25_is_refused(egress: EgressEnv) -> None:
    channel, _ = await egress.open()
    status, body = await raw_request(
        channel.socket_path, "CONNECT smtp.example.test:25 HTTP/1.1\nHost: x\n"
    )
    assert status == 403
    assert body.startswith("egress: port 25 is not allowed; allowed: public addresses")
    assert channel.take_log().refusals[0].rule == "port"


async def test_a_redirect_to_a_private_address_is_checked_again(egress: EgressEnv) -> None:
    # Loopback is opened for the first hop only; the redirect goes to 10/8.
    channel, relay = await egress.open()
    target = f"{egress.servers.http}/redirect?to=http://10.0.0.5/latest/meta-data"
    async with httpx.AsyncClient(proxy=relay.url, follow_redirects=True) as http:
        reply = await http.get(target)
    assert reply.status_code == 403
    assert reply.text.startswith("egress: 10.0.0.5 is a private address")
    log = channel.take_log()
    assert [e.status for e in log.entries] == [302]  # type: ignore[union-attr]
    assert log.refusals[0].target == "http://10.0.0.5/latest/meta-data"


async def test_urllib_follows_a_redirect_into_a_refusal(egress: EgressEnv) -> None:
    channel, relay = await egress.open()
    target = f"{egress.servers.http}/redirect?to=http://169.254.169.254/"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": relay.url}))

    def fetch() -> tuple[int, str]:
        try:
            opener.open(target, timeout=10)
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()
        raise AssertionError("the redirect was followed to the metadata address")

    status, body = await asyncio.to_thread(fetch)
    assert status == 403 and "169.254.169.254 is a link-local address" in body
    assert channel.take_log().refusals[0].rule.startswith("link-local")


async def test_a_name_resolving_to_loopback_is_refused_over_https_too(egress: EgressEnv) -> None:
    channel, relay = await egress.open(networks=())
    async with httpx.AsyncClient(proxy=relay.url) as http:
        with pytest.raises(httpx.ProxyError, match="403"):
            await http.get(f"https://localhost:{egress.servers.https_port}/echo")
    assert egress.servers.hits == []
    assert "loopback" in channel.take_log().refusals[0].message

"""Allowlist mode: exact names, *.wildcards and :port, through plain HTTP and CONNECT."""

from __future__ import annotations

import ssl

import httpx

from daemon.egress.policy import Mode
from tests.daemon.egress.conftest import EgressEnv


async def test_a_listed_host_is_reached_and_another_is_refused(egress: EgressEnv) -> None:
    channel, relay = await egress.open(mode=Mode.ALLOWLIST, allow=("api.example.test",))
    port = egress.servers.http_port
    async with httpx.AsyncClient(proxy=relay.url) as http:
        ok = await http.get(f"http://api.example.test:{port}/echo")
        refused = await http.get(f"http://evil.example.test:{port}/echo")
    headers = {k.lower(): v for k, v in ok.json()["headers"].items()}
    assert ok.status_code == 200 and headers["host"] == f"api.example.test:{port}"
    assert refused.status_code == 403
    assert refused.text == (
        "egress: evil.example.test is not in the allowlist; allowed: api.example.test on"
        f" ports 80, 443, {port}, {egress.servers.https_port}\n"
    )
    log = channel.take_log()
    assert log.total == 2 and log.refusals[0].rule == "allowlist"
    assert egress.servers.hits == ["/echo"]


async def test_wildcards_and_ports(egress: EgressEnv) -> None:
    port = egress.servers.http_port
    _, relay = await egress.open(mode=Mode.ALLOWLIST, allow=(f"*.example.test:{port}",))
    async with httpx.AsyncClient(proxy=relay.url) as http:
        assert (await http.get(f"http://svc.example.test:{port}/echo")).status_code == 200
        other_port = await http.get(f"http://svc.example.test:{egress.servers.https_port}/")
        bare = await http.get(f"http://example.test:{port}/echo")
    assert other_port.status_code == 403 and bare.status_code == 403


async def test_an_allowlisted_https_host_is_intercepted(egress: EgressEnv) -> None:
    channel, relay = await egress.open(mode=Mode.ALLOWLIST, allow=("localhost",))
    assert egress.proxy.ca is not None
    trust = ssl.create_default_context(cafile=str(egress.proxy.ca.cert_path))
    async with httpx.AsyncClient(proxy=relay.url, verify=trust) as http:
        reply = await http.post(f"https://localhost:{egress.servers.https_port}/echo", json={})
    assert reply.status_code == 200
    (entry,) = channel.take_log().entries
    assert entry.url == f"https://localhost:{egress.servers.https_port}/echo"  # type: ignore[union-attr]


async def test_egress_off_refuses_everything(egress: EgressEnv) -> None:
    channel, relay = await egress.open(mode=Mode.OFF)
    async with httpx.AsyncClient(proxy=relay.url) as http:
        reply = await http.get(f"{egress.servers.http}/echo")
    assert reply.status_code == 403
    assert "allowed: nothing (egress is off for this script)" in reply.text
    assert egress.servers.hits == [] and channel.take_log().refusals[0].rule == "egress off"

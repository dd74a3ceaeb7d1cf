"""Plain HTTP and HTTPS (intercepted and tunnelled) through the proxy, with a real
client (httpx) and real servers on loopback."""

from __future__ import annotations

import ssl

import httpx

from daemon.egress.proxy import Channel
from tests.daemon.egress.conftest import EgressEnv
from tests.daemon.egress.support import LoopbackRelay


def client(relay: LoopbackRelay, env: EgressEnv) -> httpx.AsyncClient:
    """httpx through the relay, trusting the proxy's CA (as the sandbox does)."""
    assert env.proxy.ca is not None
    trust = ssl.create_default_context(cafile=str(env.proxy.ca.cert_path))
    return httpx.AsyncClient(proxy=relay.url, verify=trust, timeout=10)


async def test_plain_http_is_relayed_and_logged(egress: EgressEnv) -> None:
    channel, relay = await egress.open()
    async with client(relay, egress) as http:
        reply = await http.post(f"{egress.servers.http}/echo?a=1", content=b"hello")
        again = await http.get(f"{egress.servers.http}/echo/2")
    assert reply.status_code == 200 and again.status_code == 200
    assert reply.json()["body"] == "hello" and reply.json()["path"] == "/echo?a=1"
    log = channel.take_log().to_json()
    assert log["total"] == 2
    first = log["requests"][0]
    assert first["method"] == "POST" and first["url"] == f"{egress.servers.http}/echo?a=1"
    assert first["status"] == 200 and first["request_body"] == "hello"
    assert ["x-echo", "yes"] in [[k.lower(), v] for k, v in first["response_headers"]]
    assert first["bytes_out"] > 0 and first["bytes_in"] > 0 and first["duration_ms"] > 0
    assert channel.account.bytes_in >= first["bytes_in"]


async def test_https_is_intercepted_with_the_state_dir_ca(egress: EgressEnv) -> None:
    channel, relay = await egress.open()
    async with client(relay, egress) as http:
        for n in range(3):
            reply = await http.get(f"{egress.servers.https}/echo/{n}", headers={"X-N": str(n)})
            assert reply.status_code == 200 and {
                k.lower(): v for k, v in reply.json()["headers"].items()
            }["x-n"] == str(n)
    log = channel.take_log().to_json()
    assert log["total"] == 3
    assert [r["url"] for r in log["requests"]] == [
        f"{egress.servers.https}/echo/{n}" for n in range(3)
    ]
    assert all(r["kind"] == "http" and r["status"] == 200 for r in log["requests"])


async def test_https_without_inspection_is_a_tunnel(egress: EgressEnv) -> None:
    channel, relay = await egress.open(inspect=False)
    # Without interception the client verifies the server itself, against the test CA.
    async with httpx.AsyncClient(
        proxy=relay.url, verify=ssl.create_default_context(cafile=str(egress.servers.ca_file))
    ) as http:
        reply = await http.get(f"{egress.servers.https}/echo/x")
    assert reply.status_code == 200
    await _closed(channel)
    log = channel.take_log().to_json()
    (entry,) = log["requests"]
    assert entry["kind"] == "tunnel" and entry["host"] == "127.0.0.1"
    assert entry["port"] == egress.servers.https_port
    assert entry["bytes_in"] > 0 and entry["bytes_out"] > 0


async def test_untrusted_upstream_certificate_is_a_clear_error(egress: EgressEnv) -> None:
    from daemon.egress.proxy import EgressProxy

    strict = EgressProxy(egress.proxy.ca, ssl.create_default_context(), egress.proxy.resolver)
    egress.proxy = strict
    channel, relay = await _open_on(strict, egress)
    try:
        async with client(relay, egress) as http:
            reply = await http.get(f"{egress.servers.https}/echo")
        # The tunnel to the proxy is up; the proxy's answer inside it says why.
        assert reply.status_code == 502
        assert reply.text.startswith(
            f"egress: the certificate of 127.0.0.1:{egress.servers.https_port} could not be"
            " verified: "
        )
        (entry,) = channel.take_log().to_json()["requests"]
        assert "could not be verified" in entry["error"]
        assert egress.servers.hits == []
    finally:
        await relay.close()
        await strict.close()


async def _open_on(proxy: object, env: EgressEnv) -> tuple[Channel, LoopbackRelay]:
    from daemon.egress.policy import EgressPolicy
    from daemon.egress.proxy import ChannelSettings, EgressProxy
    from tests.daemon.egress.conftest import LOOPBACK

    assert isinstance(proxy, EgressProxy)
    policy = EgressPolicy(ports=(env.servers.https_port,), allowed_networks=LOOPBACK)
    channel = await proxy.open_channel("strict", env.root / "strict.sock", ChannelSettings(policy))
    return channel, await LoopbackRelay(channel.socket_path).start()


async def _closed(channel: Channel) -> None:
    from tests.daemon.egress.waiting import wait_for

    await wait_for(lambda: channel.account.open_connections == 0, "the tunnel closes")

"""The request log: more than 100 requests, bodies cut at 1 KB, secrets redacted in
headers, URLs and bodies (while the server still gets the real values)."""

from __future__ import annotations

import ssl

import httpx

from daemon.egress.httplog import BODY_LIMIT, DETAILED_LIMIT
from tests.daemon.egress.conftest import EgressEnv

SECRET = "tok-9f8e7d6c5b4a"


async def test_more_than_100_requests(egress: EgressEnv) -> None:
    channel, relay = await egress.open()
    async with httpx.AsyncClient(proxy=relay.url) as http:
        for n in range(130):
            assert (await http.get(f"{egress.servers.http}/echo/{n}")).status_code == 200
        assert (await http.get("http://10.0.0.1/")).status_code == 403
    log = channel.take_log().to_json()
    assert log["total"] == 131
    assert len(log["requests"]) == DETAILED_LIMIT and log["not_detailed"] == 30
    assert log["requests"][-1]["url"].endswith("/echo/99")
    assert len(log["refusals"]) == 1
    assert channel.take_log().total == 0  # taking the log starts a fresh one


async def test_secrets_are_redacted_in_headers_urls_and_bodies(egress: EgressEnv) -> None:
    channel, relay = await egress.open(secrets={"API_TOKEN": SECRET})
    assert egress.proxy.ca is not None
    trust = ssl.create_default_context(cafile=str(egress.proxy.ca.cert_path))
    async with httpx.AsyncClient(proxy=relay.url, verify=trust) as http:
        for base in (egress.servers.http, egress.servers.https):
            reply = await http.post(
                f"{base}/echo?key={SECRET}",
                headers={"Authorization": f"Bearer {SECRET}"},
                json={"token": SECRET},
            )
            assert {k.lower(): v for k, v in reply.json()["headers"].items()}[
                "authorization"
            ] == f"Bearer {SECRET}"
        refused = await http.get(f"http://10.0.0.1/?key={SECRET}")
    assert refused.status_code == 403
    log = channel.take_log().to_json()
    text = str(log)
    assert SECRET not in text
    for entry in log["requests"]:
        assert entry["url"].endswith("/echo?key=[secret API_TOKEN]")
        headers = {k.lower(): v for k, v in entry["request_headers"]}
        assert headers["authorization"] == "Bearer [secret API_TOKEN]"
        assert entry["request_body"] == '{"token":"[secret API_TOKEN]"}'
    assert log["refusals"][0]["target"] == "http://10.0.0.1/?key=[secret API_TOKEN]"


async def test_body_cut_at_1kb_with_a_secret_across_the_cut(egress: EgressEnv) -> None:
    channel, relay = await egress.open(secrets={"K": SECRET})
    body = b"a" * (BODY_LIMIT - 5) + SECRET.encode() + b"b" * 5000
    async with httpx.AsyncClient(proxy=relay.url) as http:
        reply = await http.post(f"{egress.servers.http}/echo", content=body)
    assert len(reply.json()["body"]) == len(body)
    (entry,) = channel.take_log().to_json()["requests"]
    assert entry["request_body_truncated"] is True
    assert len(entry["request_body"]) == BODY_LIMIT
    assert entry["request_body"].endswith("a" * 5 + "[secret K]"[:5]) and SECRET[:5] not in str(
        entry
    )
    assert entry["bytes_out"] > len(body)

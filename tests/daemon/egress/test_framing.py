"""Message framing through the relay: HEAD, bodiless statuses, chunked both ways,
read-until-close responses, Expect: 100-continue, and what the proxy refuses
(upgrades, malformed requests)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.daemon.egress.conftest import EgressEnv
from tests.daemon.egress.support import raw_request


async def test_head_and_bodiless_statuses_keep_the_connection(egress: EgressEnv) -> None:
    channel, relay = await egress.open()
    base = egress.servers.http
    async with httpx.AsyncClient(proxy=relay.url) as http:
        head = await http.head(f"{base}/echo")
        no_content = await http.get(f"{base}/status/204")
        not_modified = await http.get(f"{base}/status/304")
        after = await http.get(f"{base}/echo/after")
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["content-length"]) > 0
    assert (no_content.status_code, not_modified.status_code) == (204, 304)
    assert after.json()["path"] == "/echo/after"
    assert [e.status for e in channel.take_log().entries] == [200, 204, 304, 200]  # type: ignore[union-attr]
    assert channel.account.connections_total == 1


async def test_chunked_bodies_both_ways(egress: EgressEnv) -> None:
    channel, relay = await egress.open()

    async def parts() -> AsyncIterator[bytes]:
        for n in range(3):
            yield b"chunk%d-" % n

    async with httpx.AsyncClient(proxy=relay.url) as http:
        sent = await http.post(f"{egress.servers.http}/echo", content=parts())
        received = await http.get(f"{egress.servers.http}/chunked")
    assert sent.json()["body"] == "chunk0-chunk1-chunk2-"
    assert received.content == b"part0;part1;part2;part3;part4;"
    first = channel.take_log().to_json()["requests"][0]
    assert first["request_body"] == "chunk0-chunk1-chunk2-"


@pytest.fixture
async def until_close_server() -> AsyncIterator[int]:
    """An HTTP/1.0-style server: no Content-Length, the body ends when it closes."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()


async def test_a_body_ended_by_close_is_rechunked(
    egress: EgressEnv, until_close_server: int
) -> None:
    _, relay = await egress.open(ports=(until_close_server, egress.servers.http_port))
    async with httpx.AsyncClient(proxy=relay.url) as http:
        first = await http.get(f"http://127.0.0.1:{until_close_server}/")
        second = await http.get(f"http://127.0.0.1:{until_close_server}/")
    assert first.content == b"all of it" == second.content
    assert first.headers["transfer-encoding"] == "chunked"


async def test_expect_100_continue_is_answered_by_the_proxy(egress: EgressEnv) -> None:
    channel, _ = await egress.open()
    reader, writer = await asyncio.open_unix_connection(channel.socket_path)
    writer.write(
        f"POST {egress.servers.http}/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
        "Expect: 100-continue\r\n\r\n".encode()
    )
    assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
    writer.write(b"hello")
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
    writer.close()


async def test_upgrades_and_malformed_requests_are_refused(egress: EgressEnv) -> None:
    channel, _ = await egress.open()
    status, body = await raw_request(
        channel.socket_path,
        f"GET {egress.servers.http}/echo HTTP/1.1\nHost: x\nConnection: Upgrade\n"
        "Upgrade: websocket\n",
    )
    assert status == 501 and "upgrades are not relayed" in body
    status, body = await raw_request(
        channel.socket_path, "GET /echo HTTP/1.1\nHost: x\nConnection: close\n"
    )
    assert status == 400 and "absolute http:// or https:// URLs" in body
    reader, writer = await asyncio.open_unix_connection(channel.socket_path)
    writer.write(
        f"POST {egress.servers.http}/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
        "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n".encode()
    )
    answer = await asyncio.wait_for(reader.read(), 5)  # then closed
    assert answer.startswith(b"HTTP/1.1 400") and b"egress: malformed HTTP" in answer
    writer.close()
    assert egress.servers.hits == []


async def test_plain_http_inside_a_connect_tunnel(egress: EgressEnv) -> None:
    """Node's fetch (undici's proxy agent) tunnels http:// URLs through CONNECT too."""
    channel, _ = await egress.open()
    port = egress.servers.http_port
    reader, writer = await asyncio.open_unix_connection(channel.socket_path)
    writer.write(f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
    for n in range(2):
        writer.write(f"GET /echo/{n} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
    writer.close()
    urls = [e.url for e in channel.take_log().entries]  # type: ignore[union-attr]
    assert urls == [f"http://127.0.0.1:{port}/echo/0", f"http://127.0.0.1:{port}/echo/1"]


async def test_absolute_https_urls_are_fetched_over_tls(egress: EgressEnv) -> None:
    """axios sends `GET https://...` to the proxy: the proxy then speaks TLS upstream."""
    channel, _ = await egress.open()
    url = f"{egress.servers.https}/echo/axios"
    status, body = await raw_request(
        channel.socket_path, f"GET {url} HTTP/1.1\nHost: x\nConnection: close\n"
    )
    assert status == 200 and '"path": "/echo/axios"' in body
    assert channel.take_log().entries[0].url == url  # type: ignore[union-attr]


async def test_hop_by_hop_headers_stay_with_the_proxy(egress: EgressEnv) -> None:
    """The request head sent upstream: origin-form, Host from the absolute URL, and
    the hop-by-hop and proxy headers left out."""
    channel, _ = await egress.open()
    status, body = await raw_request(
        channel.socket_path,
        f"GET {egress.servers.http}/echo HTTP/1.1\nHost: elsewhere.example\n"
        "Proxy-Connection: keep-alive\nProxy-Authorization: Basic eDp5\nTE: trailers\n"
        "Keep-Alive: 5\nX-Kept: yes\nConnection: close\n",
    )
    assert status == 200
    sent = {k.lower(): v for k, v in json.loads(body)["headers"].items()}
    assert sent["host"] == egress.servers.http.removeprefix("http://")
    assert sent["x-kept"] == "yes"
    dropped = {"proxy-connection", "proxy-authorization", "te", "keep-alive"}
    assert dropped.isdisjoint(sent)

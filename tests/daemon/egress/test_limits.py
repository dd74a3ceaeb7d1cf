"""Per-replica accounting and limits: the connection limit, bytes in and out, closing
a replica's connections, one socket per replica."""

from __future__ import annotations

import asyncio

import httpx

from tests.daemon.egress.conftest import EgressEnv
from tests.daemon.egress.support import raw_request
from tests.daemon.egress.waiting import wait_for


async def test_the_connection_limit_refuses_one_more(egress: EgressEnv) -> None:
    channel, _ = await egress.open(max_connections=2)
    held = [await asyncio.open_unix_connection(channel.socket_path) for _ in range(2)]
    await wait_for(lambda: channel.account.open_connections == 2, "both connections count")
    status, body = await raw_request(
        channel.socket_path, f"GET {egress.servers.http}/echo HTTP/1.1\nHost: x\n"
    )
    assert status == 503
    assert "connection limit reached (2 open connections per replica" in body
    assert channel.take_log().refusals[0].rule == "connections"
    for _, writer in held:
        writer.close()
    await wait_for(lambda: channel.account.open_connections == 0, "the held ones close")
    head = f"GET {egress.servers.http}/echo HTTP/1.1\nHost: x\nConnection: close\n"
    status, _ = await raw_request(channel.socket_path, head)
    assert status == 200


async def test_bytes_are_counted_per_replica(egress: EgressEnv) -> None:
    first, relay_one = await egress.open()
    second, _ = await egress.open()
    async with httpx.AsyncClient(proxy=relay_one.url) as http:
        reply = await http.post(f"{egress.servers.http}/echo", content=b"x" * 50_000)
        big = await http.get(f"{egress.servers.http}/big?n=300000")
    assert reply.status_code == 200 and len(big.content) == 300_000
    assert first.account.bytes_out > 50_000 and first.account.bytes_in > 300_000
    assert second.account.bytes_out == 0 and second.account.bytes_in == 0
    log = first.take_log()
    assert (log.bytes_out, log.bytes_in) == (first.account.bytes_out, first.account.bytes_in)


async def test_closing_a_replicas_connections_ends_its_tunnels(egress: EgressEnv) -> None:
    channel, _ = await egress.open(inspect=False)
    reader, writer = await asyncio.open_unix_connection(channel.socket_path)
    port = egress.servers.https_port
    writer.write(f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
    channel.close_connections()
    assert await asyncio.wait_for(reader.read(), 5) == b""
    await wait_for(lambda: channel.account.open_connections == 0, "the tunnel is closed")
    writer.close()

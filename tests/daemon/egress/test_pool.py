"""The channel's pool of idle upstream connections (daemon/egress/pool.py): a new
client connection per request (as `requests.get` without a Session) reuses the
upstream connection the last one left, only under the same address, TLS context and
server name, never across channels; idle ones close after the timeout, with the
channel, or to make room under the replica's connection limit; a server that closed
one is not sent to, and a GET it failed unanswered is sent again on a new one. A loopback
server counts the connections it accepts (with TLS, each is a handshake)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import httpx
import pytest

from daemon.egress.proxy import Channel
from daemon.metrics.instruments import REGISTRY
from tests.daemon.egress.conftest import EgressEnv
from tests.daemon.egress.support import LoopbackRelay
from tests.daemon.egress.waiting import wait_for


@dataclass
class CountingServer:
    """Answers each request `ok`; `/hold` once `release` is set; `/drop-reused` on a
    connection that served before: closes it unanswered (a server that timed it out
    as the request crossed its close)."""

    scheme: str
    port: int = 0
    connections: int = 0
    closed: int = 0
    requests: list[str] = field(default_factory=list)
    writers: set[asyncio.StreamWriter] = field(default_factory=set)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"

    def close_connections(self) -> None:
        for writer in list(self.writers):
            writer.close()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.add(writer)
        served = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                method, path = head.decode().split(" ")[:2]
                self.requests.append(f"{method} {path}")
                await reader.readexactly(_length(head))
                if path == "/drop-reused" and served:
                    return
                if path == "/hold" and not await self._held(reader):
                    return
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
                served += 1
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            self.writers.discard(writer)
            self.closed += 1
            writer.close()

    async def _held(self, reader: asyncio.StreamReader) -> bool:
        """Wait for `release`; False when the connection ends first."""
        ended = asyncio.ensure_future(reader.read(1))
        released = asyncio.ensure_future(self.release.wait())
        done, _ = await asyncio.wait((ended, released), return_when=asyncio.FIRST_COMPLETED)
        for waiting in (ended, released):
            waiting.cancel()
        return released in done


def _length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


Start = Callable[[str], Awaitable[CountingServer]]


@pytest.fixture
async def counting(egress: EgressEnv) -> AsyncIterator[Start]:
    """Starts a counting server (`http` or `https`, the latter with the test CA's
    certificate) on 127.0.0.1 and on 127.0.0.2 at the same port."""
    started: list[asyncio.Server] = []

    async def start(scheme: str) -> CountingServer:
        state = CountingServer(scheme)
        tls = None
        if scheme == "https":
            tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls.load_cert_chain(egress.root / "server.pem", egress.root / "server.key")
        for _ in range(20):  # the port 127.0.0.1 got may be taken on 127.0.0.2
            first = await asyncio.start_server(state.serve, "127.0.0.1", 0, ssl=tls)
            state.port = first.sockets[0].getsockname()[1]
            try:
                second = await asyncio.start_server(state.serve, "127.0.0.2", state.port, ssl=tls)
            except OSError:
                first.close()
                continue
            started.extend((first, second))
            return state
        raise AssertionError("no port free on both 127.0.0.1 and 127.0.0.2")

    yield start
    for server in started:
        server.close()


def _trust(egress: EgressEnv) -> ssl.SSLContext:
    assert egress.proxy.ca is not None
    return ssl.create_default_context(cafile=str(egress.proxy.ca.cert_path))


async def _fetch(
    egress: EgressEnv,
    opened: tuple[Channel, LoopbackRelay],
    url: str,
    method: str = "GET",
    body: bytes = b"",
) -> httpx.Response:
    """One request on a client connection of its own, closed after it; returns once
    the proxy has ended that connection too (what it kept is then in the pool)."""
    channel, relay = opened
    open_before = channel.account.open_connections
    async with httpx.AsyncClient(proxy=relay.url, verify=_trust(egress)) as http:
        answer = await http.request(method, url, content=body or None)
    await wait_for(lambda: channel.account.open_connections == open_before, "the client left")
    return answer


def _upstream_counts(channel: Channel) -> tuple[float, float]:
    """scriptd_egress_upstream_connections_total of the channel's script: new, pool."""

    def value(source: str) -> float:
        labels = {"script": channel.meter.script, "source": source}
        found = REGISTRY.get_sample_value("scriptd_egress_upstream_connections_total", labels)
        return found or 0.0

    return value("new"), value("pool")


async def _opened(
    egress: EgressEnv, server: CountingServer, **options: object
) -> tuple[Channel, LoopbackRelay]:
    return await egress.open(ports=(server.port,), **options)


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_new_client_connections_share_one_upstream_connection(
    egress: EgressEnv, counting: Start, scheme: str
) -> None:
    server = await counting(scheme)
    channel, relay = await _opened(egress, server)
    before = _upstream_counts(channel)
    for _ in range(3):
        assert (await _fetch(egress, (channel, relay), server.url("/a"))).text == "ok"
    assert server.connections == 1 and len(server.requests) == 3
    after = _upstream_counts(channel)  # the metric: one opened, two taken from the pool
    assert (after[0] - before[0], after[1] - before[1]) == (1, 2)
    log = channel.take_log()
    assert log.total == 3 and [e.status for e in log.entries] == [200, 200, 200]
    # counted per exchange, whichever connection carried it
    assert {(e.bytes_out, e.bytes_in) for e in log.entries} == {(log.bytes_out // 3, 40)}
    assert (log.bytes_out, log.bytes_in) == (channel.account.bytes_out, channel.account.bytes_in)
    assert channel.pool.count == 1 and channel.account.idle_connections == 1


async def test_channels_never_share_an_idle_connection(egress: EgressEnv, counting: Start) -> None:
    server = await counting("https")
    first, second = await _opened(egress, server), await _opened(egress, server)
    for opened in (first, second, first, second):
        assert (await _fetch(egress, opened, server.url("/a"))).status_code == 200
    assert server.connections == 2


async def test_another_server_name_or_address_is_another_connection(
    egress: EgressEnv, counting: Start
) -> None:
    tls, plain = await counting("https"), await counting("http")
    channel, relay = await egress.open(ports=(tls.port, plain.port))
    for host in ("api.example.test", "svc.example.test", "api.example.test"):
        assert (await _fetch(egress, (channel, relay), tls.url("/a", host))).status_code == 200
    assert tls.connections == 2  # both names resolve to 127.0.0.1, verified apart
    for host in ("127.0.0.1", "127.0.0.2", "127.0.0.1"):
        assert (await _fetch(egress, (channel, relay), plain.url("/a", host))).status_code == 200
    assert plain.connections == 2
    assert channel.pool.count == 4


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_an_idle_connection_closes_after_the_idle_timeout(
    egress: EgressEnv, counting: Start, scheme: str
) -> None:
    server = await counting(scheme)
    channel, relay = await _opened(egress, server, idle_timeout=0.3)
    await _fetch(egress, (channel, relay), server.url("/a"))
    await _fetch(egress, (channel, relay), server.url("/a", "127.0.0.2"))
    assert channel.pool.count == 2
    await wait_for(lambda: server.closed == 2, "the proxy closes both idle connections")
    assert channel.pool.count == 0 and channel.account.idle_connections == 0
    await _fetch(egress, (channel, relay), server.url("/a"))  # the pool keeps working after
    assert server.connections == 3 and channel.pool.count == 1


async def test_closing_the_channel_closes_its_idle_connections(
    egress: EgressEnv, counting: Start
) -> None:
    server = await counting("https")
    channel, relay = await _opened(egress, server)
    await _fetch(egress, (channel, relay), server.url("/a"))
    assert server.closed == 0
    await egress.proxy.close_channel(channel.name)
    await wait_for(lambda: server.closed == 1, "the idle connection is closed")


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_a_connection_the_server_closed_while_idle_is_not_used(
    egress: EgressEnv, counting: Start, scheme: str
) -> None:
    server = await counting(scheme)
    channel, relay = await _opened(egress, server)
    await _fetch(egress, (channel, relay), server.url("/a"))
    server.close_connections()
    await wait_for(
        lambda: all(side.at_eof for side in channel.pool.sides()), "the proxy sees the close"
    )
    assert (await _fetch(egress, (channel, relay), server.url("/a"))).text == "ok"
    assert server.connections == 2 and channel.take_log().total == 2


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_a_get_a_reused_connection_failed_unanswered_goes_again_not_a_post(
    egress: EgressEnv, counting: Start, scheme: str
) -> None:
    server = await counting(scheme)
    channel, relay = await _opened(egress, server)
    url = server.url("/drop-reused")
    assert (await _fetch(egress, (channel, relay), url)).status_code == 200
    assert (await _fetch(egress, (channel, relay), url)).text == "ok"  # dropped, then sent again
    assert server.connections == 2 and len(server.requests) == 3
    first, again = channel.take_log().entries
    assert again.status == 200 and again.bytes_out == 2 * first.bytes_out  # both sendings
    assert again.bytes_in == first.bytes_in
    refused = await _fetch(egress, (channel, relay), url, "POST", b"x")  # never sent twice
    assert refused.status_code == 502 and "without answering" in refused.text
    assert server.connections == 2 and server.requests[-1] == "POST /drop-reused"
    log = channel.take_log()
    assert log.total == 1 and log.entries[0].error and channel.pool.count == 0


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_a_get_on_the_connection_a_client_kept_goes_again_when_dropped(
    egress: EgressEnv, counting: Start, scheme: str
) -> None:
    server = await counting(scheme)
    channel, relay = await _opened(egress, server)
    async with httpx.AsyncClient(proxy=relay.url, verify=_trust(egress)) as http:
        for _ in range(2):  # one client connection: the second takes the kept upstream
            assert (await http.get(server.url("/drop-reused"))).text == "ok"
    assert server.connections == 2 and len(server.requests) == 3
    assert [e.status for e in channel.take_log().entries] == [200, 200]


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_a_connection_in_mid_exchange_when_its_worker_is_killed_is_closed(
    egress: EgressEnv, counting: Start, scheme: str
) -> None:
    server = await counting(scheme)
    channel, relay = await _opened(egress, server)
    await _fetch(egress, (channel, relay), server.url("/a", "127.0.0.2"))  # stays idle throughout
    held = asyncio.ensure_future(_fetch(egress, (channel, relay), server.url("/hold")))
    await wait_for(lambda: "GET /hold" in server.requests, "the request reaches the server")
    channel.close_connections()  # as when its worker is killed
    await wait_for(lambda: server.closed == 1, "the held request's connection is closed")
    with pytest.raises(httpx.HTTPError):
        await held
    server.release.set()
    assert channel.pool.count == 1 and not channel.pool.sides()[0].at_eof
    assert (await _fetch(egress, (channel, relay), server.url("/a"))).status_code == 200
    assert server.connections == 3


async def test_idle_connections_count_towards_the_replica_limit(
    egress: EgressEnv, counting: Start
) -> None:
    server = await counting("https")
    channel, relay = await _opened(egress, server, max_connections=3)
    for host in ("api.example.test", "svc.example.test"):
        await _fetch(egress, (channel, relay), server.url("/a", host))
    account = channel.account
    await wait_for(lambda: account.open_connections == 0, "the client connections end")
    assert account.idle_connections == 2
    held = await asyncio.open_unix_connection(channel.socket_path)
    await wait_for(lambda: account.open_connections == 1, "the held connection counts")
    assert account.idle_connections == 2  # three in all: the limit
    # One more client connection: the oldest idle one makes room for it, and its own
    # upstream connection cannot stay idle past the limit.
    assert (
        await _fetch(egress, (channel, relay), server.url("/a", "127.0.0.1"))
    ).status_code == 200
    assert account.idle_connections == 1 and server.connections == 3
    await wait_for(lambda: server.closed == 2, "the oldest and the one past the limit close")
    assert [side.pool_key and side.pool_key[3] for side in channel.pool.sides()] == [
        "svc.example.test"
    ]
    held[1].close()

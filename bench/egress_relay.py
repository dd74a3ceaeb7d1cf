"""The egress relay's own CPU per request, in one process and without sockets: a
client side and a kept-alive upstream side on stand-in transports, the request and
the response (bench/egress.py's, 256 bytes) fed to them in turn, and a call's request
log taken and made JSON every 80 requests (a secret set, as in bench/egress.py).
What is left out is the I/O (system calls, the loop's polling) and TLS, which cost
the same on any relay: what is measured is the Python and llhttp that the relay and
its log add, and a shared host's load bends it far less than bench/egress.py's rates.

    .venv/bin/python bench/egress_relay.py [--requests 20000] [--rounds 7] [--tree DIR]

--tree: measure the relay of another checkout (`git archive COMMIT | tar -x -C DIR`);
prints the best round's CPU time per request, in us.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import ipaddress
import os
import sys
import time
from typing import Any

REQUEST = b"GET http://127.0.0.1:8080/small HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 256\r\n"
    b"Date: Thu, 01 Jan 2026 00:00:00 GMT\r\nServer: Python/3.11 aiohttp/3.9\r\n\r\n" + b"x" * 256
)
SECRETS = {"API_TOKEN": "bench-7d0c1e55-secret"}


class StandInTransport:
    """Takes writes and counts them; never closes."""

    def __init__(self) -> None:
        self.written = 0

    def write(self, data: bytes) -> None:
        self.written += len(data)

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass


async def _until_written(transport: StandInTransport, before: int) -> None:
    """A relay that answers from a coroutine needs the loop to turn; one that answers
    from the callback has written already."""
    while transport.written == before:
        await asyncio.sleep(0)


async def kept_alive(upstream: Any, target: Any, account: Any) -> Any:
    """The client connection's upstreams, `upstream` kept alive for `target` as after a
    first request: in the channel's idle pool (checked by the policy first), or, in a
    tree from before the pool, by the client connection itself."""
    upstreams_module = importlib.import_module("daemon.egress.upstreams")
    policy = importlib.import_module("daemon.egress.policy")
    try:
        pool_module = importlib.import_module("daemon.egress.pool")
    except ModuleNotFoundError:
        upstreams = upstreams_module.PlainUpstreams(policy.EgressPolicy(), None, None)
        upstreams.release(target, upstream, True)
        return upstreams
    checked = importlib.import_module("daemon.egress.upstream").Target(
        "127.0.0.1", 8080, ipaddress.ip_address("127.0.0.1")
    )
    loopback = (ipaddress.ip_network("127.0.0.0/8"),)
    opened = policy.EgressPolicy(ports=(8080,), allowed_networks=loopback)
    pool = pool_module.IdlePool(account)
    upstreams = upstreams_module.PlainUpstreams(opened, None, None, pool)
    upstream.pool_key = pool_module.pool_key(checked, None)
    pool.put(upstream)
    assert await upstreams.get(target) is upstream  # checked, and taken from the pool
    upstreams.release(target, upstream, True)
    return upstreams


async def measure(requests: int, rounds: int) -> float:
    wire = importlib.import_module("daemon.egress.wire")
    exchange = importlib.import_module("daemon.egress.exchange")
    try:
        targets = importlib.import_module("daemon.egress.targets")
    except ModuleNotFoundError:  # a tree from before targets had a module of their own
        targets = exchange
    httplog = importlib.import_module("daemon.egress.httplog")
    accounting = importlib.import_module("daemon.egress.accounting")
    try:
        relay_class = importlib.import_module("daemon.egress.inline").InlineRelay
    except ModuleNotFoundError:  # a tree from before the relay in callbacks
        relay_class = exchange.Relay

    client, upstream = wire.HttpSide(requests=True), wire.HttpSide(requests=False)
    to_client, to_upstream = StandInTransport(), StandInTransport()
    client.connection_made(to_client)
    upstream.connection_made(to_upstream)
    target = targets.absolute_target(wire.Head(target=b"http://127.0.0.1:8080/small"))
    account = accounting.ReplicaAccount(100)
    upstreams = await kept_alive(upstream, target, account)
    redactor = httplog.Redactor(SECRETS)
    logs = [httplog.RequestLog(redactor)]
    relay = relay_class(client, targets.absolute_target, upstreams, lambda: logs[0], account)

    async def serve() -> None:
        while True:
            if hasattr(relay, "next_request"):
                event = await relay.next_request()
            else:
                event = await client.next_event()
            if not isinstance(event, wire.Head) or not await relay.handle(event):
                return

    task = asyncio.ensure_future(serve())
    await asyncio.sleep(0)
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        for n in range(requests):
            before = to_upstream.written
            client.data_received(REQUEST)
            await _until_written(to_upstream, before)
            before = to_client.written
            upstream.data_received(RESPONSE)
            await _until_written(to_client, before)
            if n % 80 == 79:  # a call ends: its log is taken and made JSON
                taken, logs[0] = logs[0], httplog.RequestLog(redactor)
                taken.to_json()
        best = min(best, (time.process_time() - started) / requests * 1e6)
    assert not task.done(), "the relay stopped"
    task.cancel()
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--tree", default=os.path.dirname(os.path.dirname(__file__)) or ".")
    args = parser.parse_args()
    sys.path.insert(0, os.path.abspath(args.tree))
    import uvloop

    best = uvloop.run(measure(args.requests, args.rounds))
    print(f"relay CPU per request: {best:.2f} us (best of {args.rounds} rounds, {args.tree})")


if __name__ == "__main__":
    main()

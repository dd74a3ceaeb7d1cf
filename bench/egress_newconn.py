"""Intercepted HTTPS with a new client connection per request, as scripts mostly send
it (`requests.get` without a Session, Node's fetch per call): each request is a
CONNECT, a TLS handshake with the proxy's leaf, one GET and a close. The proxy of a
base commit and this tree's, on one upstream server (bench/egress.py's children),
take turns round after round, with direct HTTPS (a new TLS connection to the server
per request) beside them for scale. Per mode: latency p50/p90 over all requests, and
the proxy's and the server's CPU time per request (the median of the rounds); the
head/base ratios are paired per round.

    .venv/bin/python bench/egress_newconn.py BASE_COMMIT [--rounds 10] [--requests 200]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from egress import Connection, Setup, child, openers  # type: ignore[import-not-found]
from egress_ab import export, start_proxy  # type: ignore[import-not-found]

HERE = Path(__file__).resolve().parent
MODES = ("base", "head", "direct")


@dataclass
class Figures:
    times_ms: list[float] = field(default_factory=list)
    proxy_us: list[float] = field(default_factory=list)  # per round, per request
    server_us: list[float] = field(default_factory=list)


async def one_request(open_connection: Callable[[], Awaitable[Connection]]) -> float:
    """Milliseconds from connecting to the whole answer; the connection then closes."""
    started = time.perf_counter()
    conn = await open_connection()
    await conn.get()
    elapsed = (time.perf_counter() - started) * 1000
    conn.close()
    with contextlib.suppress(OSError):
        await conn.writer.wait_closed()
    return elapsed


async def measure(setups: dict[str, Setup], rounds: int, requests: int) -> dict[str, Figures]:
    opens = {
        "base": openers(setups["base"])["proxy https intercepted"],
        "head": openers(setups["head"])["proxy https intercepted"],
        "direct": openers(setups["head"])["direct https"],
    }
    figures = {mode: Figures() for mode in MODES}
    for mode in MODES:  # warm: leaves minted, sessions and idle connections in place
        for _ in range(20):
            await one_request(opens[mode])
    for number in range(rounds):
        for mode in MODES if number % 2 == 0 else tuple(reversed(MODES)):
            setup = setups["head" if mode == "direct" else mode]
            server0, proxy0 = setup.cpu_seconds()
            for _ in range(requests):
                figures[mode].times_ms.append(await one_request(opens[mode]))
            server1, proxy1 = setup.cpu_seconds()
            figures[mode].proxy_us.append((proxy1 - proxy0) / requests * 1e6)
            figures[mode].server_us.append((server1 - server0) / requests * 1e6)
    return figures


def report(figures: dict[str, Figures]) -> None:
    print(f"{'mode':8} {'p50 ms':>7} {'p90 ms':>7} {'proxy us/req':>13} {'server us/req':>14}")
    for mode in MODES:
        f = figures[mode]
        proxy = f"{statistics.median(f.proxy_us):13.0f}" if mode != "direct" else f"{'-':>13}"
        print(
            f"{mode:8} {statistics.median(f.times_ms):7.3f}"
            f" {statistics.quantiles(f.times_ms, n=10)[8]:7.3f} {proxy}"
            f" {statistics.median(f.server_us):14.0f}"
        )
    base, head = figures["base"], figures["head"]
    cpu = statistics.median(h / b for b, h in zip(base.proxy_us, head.proxy_us, strict=True))
    p50 = statistics.median(head.times_ms) / statistics.median(base.times_ms)
    print(f"head/base: proxy CPU per request, paired median {cpu:.3f}; p50 {p50:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base", help="the commit to compare this tree with")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--requests", type=int, default=200, help="per mode and round")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="egress-newconn-") as tmp:
        trees = {"base": export(args.base, Path(tmp, "tree")), "head": HERE.parent}
        with child("--serve-upstream", tmp) as upstream:
            ports = json.loads(upstream.stdout.readline())
            setups, proxies = {}, []
            for name, tree in trees.items():
                directory = Path(tmp, name)
                directory.mkdir()
                shutil.copy(Path(tmp, "test-ca.pem"), directory / "test-ca.pem")
                proxy = start_proxy(tree, directory, ports)
                proxies.append(proxy)
                setups[name] = Setup(
                    directory, ports["http"], ports["https"], upstream.pid, proxy.pid
                )
            print("load average before", os.getloadavg())
            figures = asyncio.run(measure(setups, args.rounds, args.requests))
            print("load average after", os.getloadavg())
            for proxy in proxies:
                assert proxy.stdin is not None
                proxy.stdin.close()
                proxy.wait(10)
    report(figures)


if __name__ == "__main__":
    main()

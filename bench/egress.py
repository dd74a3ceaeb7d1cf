"""What the egress proxy costs: requests per second and latency through it, with and
without TLS interception, against a direct connection to the same local server, all
measured side by side in one run.

Three processes: a local HTTP and HTTPS server (aiohttp + uvloop on 127.0.0.1, the
HTTPS one with a certificate from a test CA), the proxy (daemon.egress on uvloop, two
channels: inspection on and off, loopback opened as egress.allowed_networks opens it,
the test CA given as the upstream CA file; a call ends every 20 ms, so requests are
logged in detail as in the daemon, with a secret to redact), and this client, which
speaks HTTP/1.1 over kept-alive connections (a minimal client, so the figures are the
proxy's and the server's rather than a client library's).

Modes: direct HTTP; HTTP through the proxy; direct HTTPS; HTTPS through the proxy with
interception (the client trusts the proxy's CA); HTTPS through the proxy as a tunnel.
Latency: one connection, requests one after another (p50/p90/p99 over all rounds).
Rate: several connections at once for a fixed time (the median of the rounds). The
modes take turns, round after round, so the host's load falls on all of them alike.

Targets (issue 10): interception adds at most 1 ms p50 on a kept-alive connection
(intercepted HTTPS p50 minus direct HTTPS p50), and the proxy sustains at least 0.5x
the direct request rate.

Run:  .venv/bin/python bench/egress.py [--requests 2000] [--seconds 1] [--rounds 5]
                                       [--connections 8]
                                       [--json bench/results/egress.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

HERE = Path(__file__).resolve()


# --- the client -------------------------------------------------------------------


class Connection:
    """One kept-alive HTTP/1.1 connection sending the same GET again and again."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes):
        self.reader, self.writer, self.head = reader, writer, head

    async def get(self) -> None:
        self.writer.write(self.head)
        head = await self.reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"unexpected answer: {head[:200]!r}")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


@dataclass
class Setup:
    directory: Path
    http_port: int
    https_port: int
    server_pid: int
    proxy_pid: int

    def cpu_seconds(self) -> tuple[float, float]:
        """CPU time used so far by (the server, the proxy): per request, a figure the
        host's load does not bend the way it bends wall-clock rates."""
        return _cpu(self.server_pid), _cpu(self.proxy_pid)

    def head(self, port: int, absolute: bool) -> bytes:
        target = f"http://127.0.0.1:{port}/small" if absolute else "/small"
        return f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()

    def trust(self, ca: str) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.directory / ca))


async def _through_connect(
    socket_path: Path, port: int, context: ssl.SSLContext
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_unix_connection(socket_path)
    writer.write(f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
    answer = await reader.readuntil(b"\r\n\r\n")
    if not answer.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"CONNECT refused: {answer!r}")
    await writer.start_tls(context, server_hostname="127.0.0.1")
    return reader, writer


def openers(s: Setup) -> dict[str, Callable[[], Awaitable[Connection]]]:
    direct_tls = s.trust("test-ca.pem")
    proxy_tls = s.trust("state/egress-ca.pem")

    async def direct_http() -> Connection:
        r, w = await asyncio.open_connection("127.0.0.1", s.http_port)
        return Connection(r, w, s.head(s.http_port, absolute=False))

    async def proxy_http() -> Connection:
        r, w = await asyncio.open_unix_connection(s.directory / "inspect.sock")
        return Connection(r, w, s.head(s.http_port, absolute=True))

    async def direct_https() -> Connection:
        r, w = await asyncio.open_connection("127.0.0.1", s.https_port, ssl=direct_tls)
        return Connection(r, w, s.head(s.https_port, absolute=False))

    async def intercepted() -> Connection:
        r, w = await _through_connect(s.directory / "inspect.sock", s.https_port, proxy_tls)
        return Connection(r, w, s.head(s.https_port, absolute=False))

    async def tunnel() -> Connection:
        r, w = await _through_connect(s.directory / "tunnel.sock", s.https_port, direct_tls)
        return Connection(r, w, s.head(s.https_port, absolute=False))

    return {
        "direct http": direct_http,
        "proxy http": proxy_http,
        "direct https": direct_https,
        "proxy https intercepted": intercepted,
        "proxy https tunnel": tunnel,
    }


@dataclass
class Result:
    mode: str
    p50_ms: float
    p90_ms: float
    p99_ms: float
    rate: float
    baseline: str
    server_cpu_us: float
    proxy_cpu_us: float
    added_p50_ms: float = 0.0
    rate_ratio: float = 1.0


async def latency(open_connection: Callable[[], Awaitable[Connection]], n: int) -> list[float]:
    conn = await open_connection()
    for _ in range(50):  # warm: the leaf is minted, the upstream connection opened
        await conn.get()
    times = []
    for _ in range(n):
        start = time.perf_counter()
        await conn.get()
        times.append((time.perf_counter() - start) * 1000)
    conn.close()
    return times


async def rate(
    open_connection: Callable[[], Awaitable[Connection]], connections: int, seconds: float
) -> tuple[int, float]:
    conns = [await open_connection() for _ in range(connections)]
    for conn in conns:
        await conn.get()
    done = 0
    deadline = time.perf_counter() + seconds

    async def loop(conn: Connection) -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await conn.get()
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(loop(c) for c in conns))
    elapsed = time.perf_counter() - start
    for conn in conns:
        conn.close()
    return done, elapsed


def _cpu(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def _percentile(times: list[float], q: float) -> float:
    return statistics.quantiles(times, n=100)[int(q) - 1]


async def measure(s: Setup, args: argparse.Namespace) -> list[Result]:
    """Rounds of every mode in turn (the order rotating), so a burst of load on this
    shared host falls on all modes alike rather than on one."""
    modes = openers(s)
    times: dict[str, list[float]] = {mode: [] for mode in modes}
    rates: dict[str, list[float]] = {mode: [] for mode in modes}
    cpu: dict[str, list[float]] = {mode: [0.0, 0.0, 0.0] for mode in modes}  # server, proxy, n
    order = list(modes)
    for round_number in range(args.rounds):
        turn = order[round_number % len(order) :] + order[: round_number % len(order)]
        for mode in turn:
            times[mode] += await latency(modes[mode], args.requests // args.rounds)
            before = s.cpu_seconds()
            done, elapsed = await rate(modes[mode], args.connections, args.seconds)
            after = s.cpu_seconds()
            rates[mode].append(done / elapsed)
            cpu[mode][0] += after[0] - before[0]
            cpu[mode][1] += after[1] - before[1]
            cpu[mode][2] += done
    results = {mode: _result(mode, times[mode], rates[mode], cpu[mode]) for mode in modes}
    for result in results.values():
        base = results[result.baseline]
        result.added_p50_ms = round(result.p50_ms - base.p50_ms, 3)
        result.rate_ratio = round(result.rate / base.rate, 3)
    return list(results.values())


def _result(mode: str, times: list[float], rates: list[float], cpu: list[float]) -> Result:
    server_cpu, proxy_cpu, done = cpu
    return Result(
        mode,
        round(statistics.median(times), 3),
        round(_percentile(times, 90), 3),
        round(_percentile(times, 99), 3),
        round(statistics.median(rates), 1),
        "direct https" if "https" in mode else "direct http",
        round(server_cpu / done * 1e6, 1),
        round(proxy_cpu / done * 1e6, 1),
    )


def report(results: list[Result], args: argparse.Namespace) -> dict[str, object]:
    print(f"load average before: {args.load}")
    print(
        f"{'mode':24} {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} {'req/s':>8} {'+p50 ms':>8}"
        f" {'x rate':>7} {'server us':>9} {'proxy us':>8}  vs"
    )
    for r in results:
        print(
            f"{r.mode:24} {r.p50_ms:7.3f} {r.p90_ms:7.3f} {r.p99_ms:7.3f} {r.rate:8.1f}"
            f" {r.added_p50_ms:8.3f} {r.rate_ratio:7.3f} {r.server_cpu_us:9.1f}"
            f" {r.proxy_cpu_us:8.1f}  {r.baseline}"
        )
    print("(server us, proxy us: CPU time per request of each process during the rate runs)")
    by_mode = {r.mode: r for r in results}
    checks = {
        "interception adds <= 1 ms p50": by_mode["proxy https intercepted"].added_p50_ms <= 1.0,
        "proxy http rate >= 0.5x direct": by_mode["proxy http"].rate_ratio >= 0.5,
        "intercepted rate >= 0.5x direct": by_mode["proxy https intercepted"].rate_ratio >= 0.5,
        "tunnel rate >= 0.5x direct": by_mode["proxy https tunnel"].rate_ratio >= 0.5,
    }
    for name, ok in checks.items():
        print(f"target: {name}: {'met' if ok else 'NOT met'}")
    return {
        "settings": {k: v for k, v in vars(args).items() if not k.startswith("serve")},
        "results": [asdict(r) for r in results],
        "targets": checks,
    }


@contextlib.contextmanager
def child(*argv: str) -> contextlib.AbstractContextManager[subprocess.Popen[str]]:  # type: ignore[misc]
    process = subprocess.Popen(
        [sys.executable, str(HERE), *argv],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        yield process
    finally:
        assert process.stdin is not None
        process.stdin.close()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="egress-bench-") as tmp:
        directory = Path(tmp)
        with child("--serve-upstream", tmp) as upstream:
            assert upstream.stdout is not None
            ports = json.loads(upstream.stdout.readline())
            with child("--serve-proxy", tmp, str(ports["http"]), str(ports["https"])) as proxy:
                assert proxy.stdout is not None
                if proxy.stdout.readline().strip() != "ready":
                    raise SystemExit("the proxy did not start")
                setup = Setup(directory, ports["http"], ports["https"], upstream.pid, proxy.pid)
                args.load = " ".join(f"{x:.2f}" for x in os.getloadavg())
                results = asyncio.run(measure(setup, args))
    document = report(results, args)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(document, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="sequential, for latency")
    parser.add_argument("--seconds", type=float, default=1.0, help="per rate measurement")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of all modes in turn")
    parser.add_argument("--connections", type=int, default=8, help="concurrent, for rate")
    parser.add_argument("--json", default="", help="write the results here as JSON")
    parser.add_argument("--serve-upstream", metavar="DIR", help=argparse.SUPPRESS)
    parser.add_argument("--serve-proxy", nargs=3, metavar="X", help=argparse.SUPPRESS)
    args = parser.parse_args()
    from bench.egress_servers import serve_proxy, serve_upstream  # after sys.path has the repo

    if args.serve_upstream:
        serve_upstream(Path(args.serve_upstream))
    elif args.serve_proxy:
        directory, *ports = args.serve_proxy
        serve_proxy(Path(directory), [int(p) for p in ports])
    else:
        run(args)


if __name__ == "__main__":
    main()

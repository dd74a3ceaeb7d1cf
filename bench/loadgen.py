"""Closed-loop HTTP load for the benchmarks: wrk when installed, else a built-in
generator on aiohttp keep-alive connections.

Both send the same POST with a JSON body for a fixed time over N connections and
report throughput and latency percentiles. Traffic goes to loopback only.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["LoadResult", "run_load"]


@dataclass(frozen=True)
class LoadResult:
    tool: str
    connections: int
    seconds: float
    requests: int
    errors: int
    rps: float
    p50_ms: float
    p99_ms: float

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def run_load(
    url: str, body: bytes, headers: dict[str, str], connections: int, seconds: float
) -> LoadResult:
    if not url.startswith(("http://127.", "http://localhost", "http://[::1]")):
        raise ValueError(f"refusing to load a non-loopback address: {url}")
    if shutil.which("wrk"):
        return _run_wrk(url, body, headers, connections, seconds)
    return asyncio.run(_run_builtin(url, body, headers, connections, seconds))


_WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = {body}
{headers}
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %d %d %.3f %.3f\\n", summary.requests,
    summary.errors.status + summary.errors.connect + summary.errors.read
      + summary.errors.write + summary.errors.timeout,
    summary.duration, latency:percentile(50) / 1000.0, latency:percentile(99) / 1000.0))
end
"""


def _lua_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _run_wrk(
    url: str, body: bytes, headers: dict[str, str], connections: int, seconds: float
) -> LoadResult:
    header_lines = "\n".join(
        f"wrk.headers[{_lua_string(k)}] = {_lua_string(v)}" for k, v in headers.items()
    )
    script = _WRK_SCRIPT.format(body=_lua_string(body.decode()), headers=header_lines)
    with tempfile.TemporaryDirectory() as tmp:
        lua = Path(tmp) / "post.lua"
        lua.write_text(script)
        threads = min(2, connections)
        out = subprocess.run(
            ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "-s", str(lua), url],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    match = re.search(r"RESULT (\d+) (\d+) (\d+) ([\d.]+) ([\d.]+)", out)
    if not match:
        raise RuntimeError(f"wrk printed no result:\n{out}")
    requests, errors, duration_us = (int(match.group(i)) for i in (1, 2, 3))
    duration = duration_us / 1e6
    return LoadResult(
        "wrk",
        connections,
        duration,
        requests,
        errors,
        requests / duration,
        float(match.group(4)),
        float(match.group(5)),
    )


async def _run_builtin(
    url: str, body: bytes, headers: dict[str, str], connections: int, seconds: float
) -> LoadResult:
    import aiohttp

    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + seconds
    hdrs = {"Content-Type": "application/json", **headers}

    async def one_connection(session: aiohttp.ClientSession) -> None:
        nonlocal errors
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            async with session.post(url, data=body, headers=hdrs) as resp:
                await resp.read()
                if resp.status != 200:
                    errors += 1
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(one_connection(session) for _ in range(connections)))
    duration = time.perf_counter() - started
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] if latencies else 0.0
    return LoadResult(
        "builtin",
        connections,
        duration,
        len(latencies),
        errors,
        len(latencies) / duration,
        statistics.median(latencies) * 1000 if latencies else 0.0,
        p99 * 1000,
    )

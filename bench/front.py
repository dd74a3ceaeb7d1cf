"""The gateway's per-call code on three HTTP fronts, side by side in one run.

Each front runs in its own process on uvloop and serves the same state: a cached
API key, the serving table, a dispatcher that answers at once (no worker hop, so
the figure is the front plus our per-call Python), and the execution recorder:
  aiohttp   daemon/gateway/app.py as the daemon serves it today
  front     daemon/gateway/front.py + daemon/gateway/calls.py (uvloop Protocol, httptools)
  granian   granian's RSGI server embedded in the process's loop, calling the same
            FrontCalls.handle (a Request built from the RSGI scope)
  bare      bench/bare_server.py, the bare aiohttp handler, for the ratio
  nginx     a fixed 200 from nginx (one worker), the machine's ceiling, when installed
wrk drives each at N connections, then at 1 for the latency; the server's CPU time
per request (at N) comes from /proc/PID/stat (nginx: its worker's). Medians of
--rounds rounds, fronts interleaved per round.

    .venv/bin/python -m bench.front [--seconds 5] [--rounds 3] [--connections 32]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results" / "front.json"
FRONTS = ("bare", "aiohttp", "front", "granian", "nginx")


async def _state() -> Any:
    """A Gateway over the test fakes whose key table holds $BENCH_KEY for `alpha`."""
    from daemon.gateway.app import Gateway
    from daemon.gateway.recorder import ExecutionRecorder
    from daemon.gateway.serving_table import Routes
    from daemon.keys.api_key import KeyRecord, parse_key
    from daemon.keys.checker import KeyChecker
    from tests.daemon.gateway.test_app import FakeRunner, FakeStore, Recorded, target

    parsed = parse_key(os.environ["BENCH_KEY"])
    assert parsed is not None
    records = {parsed.key_id: KeyRecord(parsed.key_id, "alpha", "bench", "")}
    keys = KeyChecker(records.get, verify=lambda h, s: True)
    routes = Routes(FakeRunner(), keys)  # type: ignore[arg-type]
    await routes.start(target("alpha", 1))
    recorder = ExecutionRecorder(Recorded(), keys, output_bytes=100)  # type: ignore[arg-type]
    return Gateway(routes, keys, FakeStore(), recorder, 4 << 20)  # type: ignore[arg-type]


async def _serve_aiohttp(port: int) -> None:
    from aiohttp import web

    from daemon.gateway.app import make_gateway

    runner = web.AppRunner(make_gateway(await _state()), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
    await asyncio.Event().wait()


async def _serve_front(port: int) -> None:
    from daemon.gateway.calls import FrontCalls
    from daemon.gateway.front import FrontServer

    await FrontServer(FrontCalls(await _state())).start("127.0.0.1", port)
    await asyncio.Event().wait()


async def _serve_granian(port: int) -> None:
    from granian.constants import Interfaces
    from granian.server.embed import Server

    from daemon.gateway.calls import FrontCalls
    from daemon.gateway.front_types import Answer, Request

    calls = FrontCalls(await _state())

    async def app(scope: Any, proto: Any) -> None:
        request = Request(scope.client.rsplit(":", 1)[0])
        request.method = scope.method
        request.url = (
            scope.path + ("?" + scope.query_string if scope.query_string else "")
        ).encode()
        request.headers = [(k.encode(), v.encode()) for k, v in scope.headers.items()]
        request.body = bytearray(await proto())
        later: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        answer = calls.handle(request, later.set_result)
        if answer is None:
            answer = await later
        proto.response_bytes(answer.status, list(answer.headers), answer.body)

    server = Server(app, address="127.0.0.1", port=port, interface=Interfaces.RSGI,
                    log_enabled=False, backlog=1024)  # fmt: skip
    await server.serve()


def serve(kind: str, port: int) -> None:
    import uvloop

    serve_fn = {"aiohttp": _serve_aiohttp, "front": _serve_front, "granian": _serve_granian}
    uvloop.run(serve_fn[kind](port))


def measure(kind: str, connections: int, seconds: int) -> dict[str, float] | None:
    from bench.nginx_ceiling import nginx_ceiling
    from tests.helpers import free_port

    if kind != "nginx":
        return _measure_python(kind, connections, seconds)
    port = free_port()
    with nginx_ceiling(port) as proc:
        if proc is None:
            return None
        return _load(proc, port, {}, connections, seconds, worker=True)


def _load(
    proc: subprocess.Popen[bytes], port: int, headers: dict[str, str], connections: int,
    seconds: int, worker: bool = False,
) -> dict[str, float]:  # fmt: skip
    from bench.invoke import _wait_port, cpu_seconds
    from bench.loadgen import run_load

    _wait_port(port)
    url = f"http://127.0.0.1:{port}/v1/scripts/alpha/functions/f"
    run_load(url, b"{}", headers, 1, 1)  # warm-up; caches the key
    pid = proc.pid
    if worker:  # nginx: the one worker process does the work
        pid = int(Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()[0])
    cpu0 = cpu_seconds(pid)
    result = run_load(url, b"{}", headers, connections, seconds)
    cpu = cpu_seconds(pid) - cpu0
    single = run_load(url, b"{}", headers, 1, seconds)
    if result.errors or single.errors:
        raise RuntimeError(f"{result.errors + single.errors} errors")
    return {"rps": result.rps, "cpu_us": cpu / max(1, result.requests) * 1e6,
            "p50_ms": single.p50_ms, "p99_ms": single.p99_ms}  # fmt: skip


def _measure_python(kind: str, connections: int, seconds: int) -> dict[str, float]:
    from daemon.keys.api_key import mint_key
    from tests.helpers import free_port

    port = free_port()
    if kind == "bare":
        argv = [sys.executable, str(BENCH / "bare_server.py"), str(port)]
    else:
        argv = [sys.executable, "-m", "bench.front", "--serve", kind, str(port)]
    key = mint_key().key
    proc = subprocess.Popen(argv, cwd=BENCH.parent, env={**os.environ, "BENCH_KEY": key})
    try:
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        return _load(proc, port, headers, connections, seconds)
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", nargs=2, metavar=("KIND", "PORT"), help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]))
        return
    rounds: dict[str, list[dict[str, float]]] = {k: [] for k in FRONTS}
    for _ in range(args.rounds):
        for kind in FRONTS:
            figures = measure(kind, args.connections, args.seconds)
            if figures is not None:
                rounds[kind].append(figures)
    bare = statistics.median(r["rps"] for r in rounds["bare"])
    table = {}
    print(f"{'front':8} {'req/s':>8} {'x bare':>7} {'CPU/req':>9} {'p50 @1':>8} {'p99 @1':>8}")
    for kind, runs in rounds.items():
        if not runs:
            continue
        row = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        table[kind] = {**row, "ratio": row["rps"] / bare}
        print(f"{kind:8} {row['rps']:8.0f} {row['rps'] / bare:7.2f} {row['cpu_us']:6.1f} us"
              f" {row['p50_ms']:5.2f} ms {row['p99_ms']:5.2f} ms")  # fmt: skip
    RESULTS.parent.mkdir(exist_ok=True)
    doc = {"connections": args.connections, "seconds": args.seconds, "rounds": args.rounds,
           "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "fronts": table}  # fmt: skip
    RESULTS.write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()

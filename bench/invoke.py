"""Calling a deployed function, next to its baselines, in one run (issue 4, part 9).

Rows, each with its baseline beside it and the target:
(a)/(b) a bare aiohttp + uvloop handler (bench/bare_server.py) and the real scriptd
        daemon calling a no-op Python function with a cached API key, at 1 and 32
        keep-alive connections (wrk when installed, else bench/loadgen.py's own):
        throughput at 32 >= 1.0 x bare; added latency at 1: p50 <= +0.15 ms,
        p99 <= +1 ms; the daemon process's CPU per call (/proc) <= 40 us; and nginx's
        fixed 200 as the machine's ceiling when nginx is installed. The daemon runs as
        by default, its metrics on (--no-metrics: off); its replicas' CPU per call (their
        cgroup) is shown beside. Both servers are up together; the 1-connection runs
        alternate between them in --latency-rounds rounds and their p50/p99 are the
        rounds' medians, so a busy host's load falls on both alike (where the tail
        goes call by call: bench/invoke_split.py). The targets with their figures are
        also the JSON's "targets".
(c)     a new replica to its first answered call (bench/invoke_replica.py) next to
        `bwrap --unshare-all ... python3 -I -S -c pass`: <= 1.5 x bwrap. Two rows:
        cold (no spare sandbox) and released from the pool's parked spare.
(d)     worker respawn after a timeout kill: from the Timeout (the gateway's 504) to
        the next call answered by the fresh worker: <= 20 ms.
(e)     the Prometheus metrics' cost (bench/metrics_overhead.py): two daemons, metrics
        off and on (scraped every second), alternating load runs at the highest
        connection count: throughput with metrics >= 0.97 x without.
(f)/(g) concurrency (bench/invoke_concurrency.py): an async no-op at concurrency 8
        (>= 2.0 x bare, in alternating rounds with the bare handler and the sync no-op;
        the daemon's CPU per call beside the replica's, with the periods its CPU quota
        throttled it in: which side runs out first),
        and `await asyncio.sleep(0.5)` at concurrency 32 under 64 connections against
        the ideal replicas x workers x concurrency / 0.5 s.
Medians everywhere. Prints a table, writes bench/results/invoke.json.
Run as root (sandboxes):  .venv/bin/python -m bench.invoke [--seconds 10] [--runs 20]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import uvloop

from bench import invoke_concurrency
from bench.invoke_replica import BWRAP_ARGV, measure_replicas
from bench.invoke_table import (
    Row,
    concurrency_rows,
    http_rows,
    http_targets,
    loads_line,
    metrics_rows,
    print_table,
    replica_rows,
)
from bench.loadgen import LoadResult, run_load
from bench.metrics_overhead import measure as measure_metrics
from bench.nginx_ceiling import nginx_ceiling
from tests.helpers import AdminClient, DaemonProcess, free_port, make_zip

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results" / "invoke.json"
NOOP_MAIN = "def noop():\n    return None\n"
BODY = b"{}"


# --- (a) and (b): HTTP load --------------------------------------------------------------


def _wait_port(port: int, timeout: float = 20) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def replicas_cpu_seconds(daemon: DaemonProcess) -> float:
    """CPU of every sandbox of `daemon`: its cgroup root's cpuacct (v1) or cpu.stat."""
    name = f"scriptd-test-{daemon.port}"
    for base in ("/sys/fs/cgroup/cpuacct", "/sys/fs/cgroup/cpu,cpuacct"):
        for root, dirs, _ in os.walk(base):
            if name in dirs:
                return int(Path(root, name, "cpuacct.usage").read_text()) / 1e9
            dirs[:] = [d for d in dirs if not d.startswith("scriptd-")]
    return float("nan")


def replicas_throttled(daemon: DaemonProcess) -> int:
    """CFS periods in which a sandbox of `daemon` was throttled by its CPU quota, so
    far: nr_throttled of every cpu.stat below its cgroup root (v1 cpu, or v2)."""
    name = f"scriptd-test-{daemon.port}"
    for base in ("/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup"):
        for root, dirs, _ in os.walk(base):
            if name in dirs:
                stats = [Path(r, "cpu.stat") for r, _, f in os.walk(Path(root, name))
                         if "cpu.stat" in f]  # fmt: skip
                return sum(_nr_throttled(path) for path in stats)
            dirs[:] = [d for d in dirs if not d.startswith("scriptd-")]
    return 0


def _nr_throttled(path: Path) -> int:
    for line in path.read_text().splitlines():
        key, _, value = line.partition(" ")
        if key == "nr_throttled":
            return int(value)
    return 0


@dataclass
class Server:
    """Where a load run goes, and the process whose CPU it costs."""

    pid: int
    url: str
    headers: dict[str, str]


def merged(runs: list[LoadResult]) -> LoadResult:
    """Rounds of one server as one result: counts summed, percentiles their medians."""
    seconds = sum(r.seconds for r in runs)
    requests = sum(r.requests for r in runs)
    return LoadResult(runs[0].tool, runs[0].connections, seconds, requests,
                      sum(r.errors for r in runs), requests / seconds if seconds else 0.0,
                      statistics.median(r.p50_ms for r in runs),
                      statistics.median(r.p99_ms for r in runs))  # fmt: skip


def interleaved_loads(
    servers: dict[str, Server], connections: list[int], seconds: float, latency_rounds: int
) -> tuple[dict[str, dict[int, LoadResult]], dict[str, dict[int, float]]]:
    """Per server and connection count a load result and the CPU µs its process spent
    per request. At 1 connection the `seconds` are cut into `latency_rounds` runs per
    server, alternating, and the percentiles are the rounds' medians: a busy host's
    load then falls on both alike."""
    results: dict[str, dict[int, LoadResult]] = {name: {} for name in servers}
    cpu_us: dict[str, dict[int, float]] = {name: {} for name in servers}
    for c in connections:
        rounds = latency_rounds if c == 1 else 1
        per_run = max(1, round(seconds / rounds))  # whole seconds: wrk
        runs: dict[str, list[LoadResult]] = {name: [] for name in servers}
        spent = dict.fromkeys(servers, 0.0)
        for i in range(rounds):
            for name in list(servers) if i % 2 == 0 else reversed(servers):
                server = servers[name]
                before = cpu_seconds(server.pid)
                runs[name].append(run_load(server.url, BODY, server.headers, c, per_run))
                spent[name] += cpu_seconds(server.pid) - before
        for name, done in runs.items():
            results[name][c] = merged(done)
            cpu_us[name][c] = spent[name] / max(1, results[name][c].requests) * 1e6
    return results, cpu_us


def load_nginx(connections: int, seconds: float) -> LoadResult | None:
    """nginx's fixed 200 (bench/nginx_ceiling.py): the machine's ceiling, if installed."""
    port = free_port()
    with nginx_ceiling(port) as proc:
        if proc is None:
            return None
        _wait_port(port)
        url = f"http://127.0.0.1:{port}/v1/scripts/bench/functions/noop"
        run_load(url, BODY, {}, 1, 1)  # warm-up
        return run_load(url, BODY, {}, connections, seconds)


@contextlib.contextmanager
def bare_server() -> Iterator[Server]:
    port = free_port()
    server = subprocess.Popen([sys.executable, str(BENCH / "bare_server.py"), str(port)])
    try:
        _wait_port(port)
        url = f"http://127.0.0.1:{port}/v1/scripts/bench/functions/noop"
        run_load(url, BODY, {}, 1, 1)  # warm-up
        yield Server(server.pid, url, {})
    finally:
        server.terminate()
        server.wait(10)


def deploy_noop(admin: AdminClient, profile: str) -> str:
    """A no-op function deployed with `profile`; returns an API key for it."""
    archive = admin.upload(make_zip({"main.py": NOOP_MAIN}))
    admin.create("bench", archive_id=archive, profile=profile, deploy=True)
    script = admin.wait_status("bench")
    if script["status"] != "Deployed":
        raise RuntimeError(f"the no-op script did not deploy: {script}")
    return str(admin.call("POST", "/v1/scripts/bench/keys", {}, expect=201)["key"])


@contextlib.contextmanager
def daemon_serving(profile: str, metrics: bool) -> Iterator[tuple[Server, DaemonProcess]]:
    """The daemon as it runs by default (its Prometheus metrics on, unless `metrics` is
    False) with the no-op deployed and its key cached."""
    config = {"metrics": {"listen": f"127.0.0.1:{free_port()}"}} if metrics else {}
    with tempfile.TemporaryDirectory(prefix="scriptd-invoke-") as tmp:
        daemon = DaemonProcess(Path(tmp), config, Path(tmp) / "cache")
        daemon.start()
        try:
            key = deploy_noop(daemon.client(), profile)
            url = f"http://127.0.0.1:{daemon.port}/v1/scripts/bench/functions/noop"
            headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
            check = run_load(url, BODY, headers, 1, 1)  # warm-up; caches the key
            if check.errors or not check.requests:
                raise RuntimeError(f"calls fail: {check}\n{daemon.log()[-3000:]}")
            assert daemon.proc is not None
            yield Server(daemon.proc.pid, url, headers), daemon
        finally:
            daemon.stop()


def load_http(
    connections: list[int], seconds: float, profile: str, metrics: bool, latency_rounds: int
) -> tuple[dict[str, dict[int, LoadResult]], dict[str, dict[int, float]], dict[str, Any]]:
    """The bare handler and the daemon, both up, loaded in turn (interleaved_loads):
    results, CPU µs per request, and the daemon's profile with its replicas' CPU per call
    (their cgroup)."""
    with bare_server() as bare, daemon_serving(profile, metrics) as (ours, daemon):
        replicas_before = replicas_cpu_seconds(daemon)
        results, cpu_us = interleaved_loads({"bare": bare, "scriptd": ours}, connections,
                                            seconds, latency_rounds)  # fmt: skip
        calls = sum(r.requests for r in results["scriptd"].values())
        info = _profile_info(daemon.client(), profile)
        info["daemon_pid"] = ours.pid
        info["metrics"] = metrics
        info["daemon_cpu_us_per_call"] = cpu_us["scriptd"]
        info["replica_cpu_us_per_call"] = (
            (replicas_cpu_seconds(daemon) - replicas_before) / max(1, calls) * 1e6
        )
    return results, cpu_us, info


def _profile_info(admin: AdminClient, profile: str) -> dict[str, Any]:
    for p in admin.get("/v1/profiles")["profiles"]:
        if p["name"] == profile:
            return {"profile": profile, "vcpus": p["vcpus"], "workers": max(1, int(p["vcpus"]))}
    return {"profile": profile}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=10, help="per load run (whole seconds: wrk)")
    parser.add_argument("--runs", type=int, default=20, help="samples for (c) and (d)")
    parser.add_argument("--profile", default="1vcpu-2gb", help="hardware profile for (b)")
    parser.add_argument("--connections", default="1,32")
    parser.add_argument(
        "--latency-rounds", type=int, default=4, help="1 connection: alternating runs, medians"
    )
    parser.add_argument("--json", type=Path, default=RESULTS)
    parser.add_argument("--skip-http", action="store_true")
    parser.add_argument("--no-metrics", action="store_true", help="(b) with metrics off")
    parser.add_argument("--skip-replica", action="store_true")
    parser.add_argument("--skip-metrics", action="store_true")
    parser.add_argument("--skip-concurrency", action="store_true")
    parser.add_argument("--io-seconds", type=int, default=30, help="the run of (g)")
    parser.add_argument("--conc-rounds", type=int, default=5, help="alternating rounds of (f)")
    parser.add_argument("--conc-seconds", type=int, default=3, help="per run of (f)")
    parser.add_argument("--metrics-rounds", type=int, default=30, help="run pairs for (e)")
    parser.add_argument("--metrics-seconds", type=int, default=2, help="per run of (e)")
    parser.add_argument("--metrics-scrape-s", type=float, default=15.0, help="(e)'s scrapes")
    parser.add_argument("--metrics-control", action="store_true", help="(e) with both off")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("run as root: replicas run in real sandboxes", file=sys.stderr)
        return 2
    conns = [int(c) for c in args.connections.split(",")]
    out: dict[str, Any] = {"host": _host(), "args": vars(args) | {"json": str(args.json)}}
    rows: list[Row] = []
    if not args.skip_http:
        results, cpu_us, info = load_http(conns, args.seconds, args.profile,
                                          not args.no_metrics, args.latency_rounds)  # fmt: skip
        bare, ours, bare_cpu = results["bare"], results["scriptd"], cpu_us["bare"]
        nginx = load_nginx(max(conns), args.seconds)
        out["http"] = {"bare": _dump(bare), "scriptd": _dump(ours), "profile": info,
                       "bare_cpu_us_per_request": bare_cpu,
                       "nginx": nginx.to_json() if nginx else None}  # fmt: skip
        http = http_rows(bare, ours, info["daemon_cpu_us_per_call"], bare_cpu, nginx,
                         info["replica_cpu_us_per_call"])  # fmt: skip
        out["targets"] = http_targets(http, max(conns))
        rows += http
    if not args.skip_concurrency:
        out["concurrency"] = invoke_concurrency.measure(
            max(conns), args.conc_seconds, args.profile, args.io_seconds, args.conc_rounds
        )
        rows += concurrency_rows(out["concurrency"])
    if not args.skip_replica:
        figs, bwrap = uvloop.run(measure_replicas(args.runs))
        out["replica"] = {**asdict(figs), "bwrap_ms": bwrap, "bwrap_argv": BWRAP_ARGV}
        rows += replica_rows(figs.first_call_ms, figs.spare_first_call_ms, bwrap, figs.respawn_ms)
    if not args.skip_metrics:
        out["metrics"] = measure_metrics(max(conns), args.metrics_seconds, args.metrics_rounds,
                                         args.profile, args.metrics_scrape_s,
                                         args.metrics_control)  # fmt: skip
        rows += metrics_rows(out["metrics"])
    _report(out, rows, args)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    out["rows"] = [asdict(r) | {"ratio": r.ratio} for r in rows]
    args.json.write_text(json.dumps(out, indent=1))
    print(f"\nwritten: {args.json}")
    return 0 if all(r.met for r in rows) else 1


def _report(out: dict[str, Any], rows: list[Row], args: argparse.Namespace) -> None:
    host = out["host"]
    print(f"scriptd invoke bench - {host['cpus']} CPUs shared by the load generator, the "
          f"daemon and the workers; load avg at start {host['loadavg']}")  # fmt: skip
    if "http" in out:
        info = out["http"]["profile"]
        print(f"(a)/(b) no-op Python function, profile {info.get('profile')} "
              f"({info.get('vcpus')} vCPU quota, {info.get('workers')} worker(s)), cached key, "
              f"metrics {'on' if info.get('metrics') else 'off'}, "
              f"POST {BODY.decode()} for {args.seconds:g} s per server and connection count; "
              f"at 1 connection in {args.latency_rounds} alternating runs per server, "
              f"p50/p99 their medians")  # fmt: skip
        for c in sorted(out["http"]["bare"]):
            print(loads_line("bare", LoadResult(**out["http"]["bare"][c])))
            print(loads_line("scriptd", LoadResult(**out["http"]["scriptd"][c])))
    if "replica" in out:
        rep = out["replica"]
        med = statistics.median
        print(f"(c) medians of {args.runs} interleaved rounds: new replica cold "
              f"{med(rep['first_call_ms']):.2f} ms (pool.start -> hello "
              f"{med(rep['hello_ms']):.2f} ms), from the parked spare "
              f"{med(rep['spare_first_call_ms']):.2f} ms (-> hello "
              f"{med(rep['spare_hello_ms']):.2f} ms), bwrap "
              f"{med(rep['bwrap_ms']):.2f} ms: {' '.join(BWRAP_ARGV)}")  # fmt: skip
        print(f"(d) medians of {args.runs}: Timeout -> next call answered "
              f"{med(rep['respawn_ms']):.2f} ms; kill_worker sent -> new worker frame "
              f"{med(rep['respawn_announce_ms']):.2f} ms (K=1, timeout 0.3 s)")  # fmt: skip
    if "concurrency" in out:
        c = out["concurrency"]
        print(f"(f) {args.conc_rounds} rounds of a {args.conc_seconds} s run each, back to "
              f"back: bare, sync no-op conc 1, async no-op conc 8; req/s per round:")  # fmt: skip
        for name, runs in c["rounds"].items():
            print(f"  {name:9} " + " ".join(f"{r['rps']:7.0f}" for r in runs))
        print(f"(g) one replica of {c['profile']} ({c['workers']} worker(s)), concurrency 32")
        print(loads_line("sleep", LoadResult(**c["io"]["load"])))
    if "metrics" in out:
        m = out["metrics"]
        rps = " ".join(
            f"{a:.0f}/{b:.0f}" for a, b in zip(m["on"]["rps"], m["off"]["rps"], strict=True)
        )
        scrape = f"every {m['scrape_every_s']:g} s, {m['median_scrape_ms'] or 0:.1f} ms each"
        print(f"(e) {m['rounds']} rounds of a {m['seconds']:g} s run on each daemon, back to "
              f"back, {m['connections']} connections; {m['scrapes']} scrapes of the one with "
              f"metrics ({scrape}, wall); req/s on/off per round: {rps}")  # fmt: skip
    print()
    print_table(rows)


def _dump(results: dict[int, LoadResult]) -> dict[int, Any]:
    return {c: r.to_json() for c, r in results.items()}


def _host() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


if __name__ == "__main__":
    sys.exit(main())

"""What the Prometheus metrics cost a call (issue 13, part 2): the real daemon with
metrics off (`metrics.listen = ""`: the listener is not started and the gateway counts
nothing) and on (the listener on a free loopback port, scraped every second by a
thread during the run: fifteen times Prometheus' default rate), side by side in one
run: both deployed, then alternating load runs (off, on, on, off, ...) so drift in
the machine's load falls on both alike. Medians of throughput and of the daemon's
CPU time per call (/proc). Target: throughput with metrics >= 0.97 x without.

Run alone as root:  .venv/bin/python -m bench.invoke --skip-http --skip-replica
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.loadgen import LoadResult, run_load
from tests.helpers import DaemonProcess, free_port

BODY = b"{}"
SCRAPE_EVERY_S = 1.0


@dataclass
class Side:
    """One daemon of the comparison and its runs."""

    name: str
    daemon: DaemonProcess
    url: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    metrics_port: int | None = None
    rps: list[float] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)
    scrapes: int = 0


class Scraper:
    """GET /metrics every second until stopped (a thread: the load runs meanwhile)."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/metrics"
        self.count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Scraper:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(SCRAPE_EVERY_S):
            with urllib.request.urlopen(self.url, timeout=10) as reply:
                reply.read()
            self.count += 1


def _start(root: Path, name: str, metrics_port: int | None, profile: str) -> Side:
    from bench.invoke import deploy_noop

    listen = f"127.0.0.1:{metrics_port}" if metrics_port else ""
    (root / name).mkdir(parents=True)
    daemon = DaemonProcess(root / name, {"metrics": {"listen": listen}}, root / "cache")
    daemon.start()
    key = deploy_noop(daemon.client(), profile)
    url = f"http://127.0.0.1:{daemon.port}/v1/scripts/bench/functions/noop"
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    check = run_load(url, BODY, headers, 1, 1)  # warm-up; caches the key
    if check.errors or not check.requests:
        raise RuntimeError(f"calls fail: {check}\n{daemon.log()[-3000:]}")
    return Side(name, daemon, url, headers, metrics_port)


def _run_once(side: Side, connections: int, seconds: float) -> None:
    from bench.invoke import cpu_seconds

    assert side.daemon.proc is not None
    pid = side.daemon.proc.pid
    before = cpu_seconds(pid)
    if side.metrics_port is None:
        result: LoadResult = run_load(side.url, BODY, side.headers, connections, seconds)
    else:
        with Scraper(side.metrics_port) as scraper:
            result = run_load(side.url, BODY, side.headers, connections, seconds)
        side.scrapes += scraper.count
    side.rps.append(result.rps)
    side.cpu_us.append((cpu_seconds(pid) - before) / max(1, result.requests) * 1e6)


def measure(connections: int, seconds: float, rounds: int, profile: str) -> dict[str, Any]:
    """Both daemons, `rounds` pairs of runs in ABBA order; medians and the runs."""
    with tempfile.TemporaryDirectory(prefix="scriptd-metrics-") as tmp:
        root = Path(tmp)
        off = _start(root, "off", None, profile)
        try:
            on = _start(root, "on", free_port(), profile)
            try:
                for i in range(rounds):
                    for side in (off, on) if i % 2 == 0 else (on, off):
                        _run_once(side, connections, seconds)
            finally:
                on.daemon.stop()
        finally:
            off.daemon.stop()
    med = statistics.median
    return {
        "connections": connections, "seconds": seconds, "rounds": rounds,
        "scrape_every_s": SCRAPE_EVERY_S, "scrapes": on.scrapes,
        "off": {"rps": off.rps, "cpu_us_per_call": off.cpu_us},
        "on": {"rps": on.rps, "cpu_us_per_call": on.cpu_us},
        "median_rps_off": med(off.rps), "median_rps_on": med(on.rps),
        "median_cpu_us_off": med(off.cpu_us), "median_cpu_us_on": med(on.cpu_us),
        "throughput_ratio": med(on.rps) / med(off.rps),
    }  # fmt: skip

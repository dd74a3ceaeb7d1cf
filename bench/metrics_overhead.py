"""What the Prometheus metrics cost a call (issue 13, part 2): the real daemon with
metrics off (`metrics.listen = ""`: the listener is not started and the gateway counts
nothing) and on (the listener on a free loopback port, scraped by a thread every
`--metrics-scrape-s`, 15 s by default, as Prometheus usually does), side by side in
one run. Both are deployed, then loaded in turn, round after round: one short run on
each, back to back, the order alternating (off-on, on-off, ...), so that a trend in
a busy shared machine's load falls on both alike. The figure is the median of the
rounds' throughput ratios (on/off), with the daemons' CPU time per call (/proc).
Target: throughput with metrics >= 0.97 x without.

`--metrics-control` runs the same comparison with metrics off on both daemons: the
spread and bias of the method itself on this machine (an A/A test).

Beside it, the hot path's added work alone, timed in this process: `observe_call`
(what the recorder does per call) with metrics on and off, in µs, and its share of
the daemon's CPU time per call.

Run alone as root:  .venv/bin/python -m bench.invoke --skip-http --skip-replica
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.loadgen import run_load
from daemon.metrics.calls import observe_call, set_counting
from tests.helpers import DaemonProcess, free_port

BODY = b"{}"
SCRAPE_EVERY_S = 15.0  # Prometheus' usual scrape_interval (its built-in default is 1 min)


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


class Scraper:
    """GET /metrics every `every_s` until stopped (a thread: the load runs meanwhile)."""

    def __init__(self, port: int | None, every_s: float) -> None:
        self.every_s = every_s
        self.url = f"http://127.0.0.1:{port}/metrics" if port else None
        self.count = 0
        self.wall_ms: list[float] = []  # each scrape, as the client waited for it
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Scraper:
        if self.url is not None:  # None: the control run, metrics off on both
            self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            assert self.url is not None
            start = time.perf_counter()
            with urllib.request.urlopen(self.url, timeout=10) as reply:
                reply.read()
            self.wall_ms.append((time.perf_counter() - start) * 1000)
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


def _run_pair(off: Side, on: Side, connections: int, seconds: float, on_first: bool) -> float:
    """One run on each daemon, back to back (the order alternates round by round, so
    a trend in the machine's load falls on both alike); the throughput ratio on/off."""
    from bench.invoke import cpu_seconds

    rps = {}
    for side in (on, off) if on_first else (off, on):
        assert side.daemon.proc is not None
        pid = side.daemon.proc.pid
        before = cpu_seconds(pid)
        result = run_load(side.url, BODY, side.headers, connections, seconds)
        side.rps.append(result.rps)
        side.cpu_us.append((cpu_seconds(pid) - before) / max(1, result.requests) * 1e6)
        rps[side.name] = result.rps
    return rps["on"] / max(rps["off"], 1e-9)


def observe_cost_us(calls: int = 200_000, repeats: int = 5) -> dict[str, float]:
    """The hot path's added work alone, in this process: µs per call of the count
    the recorder makes (metrics on) and of the check it makes with metrics off."""
    timings: dict[str, list[float]] = {"on": [], "off": []}
    for _ in range(repeats):
        for mode in ("on", "off"):
            set_counting(mode == "on")
            start = time.perf_counter()
            for i in range(calls):
                observe_call("bench", "noop", "ok", 0.05, 0.4 + (i & 7) * 0.01)
            timings[mode].append((time.perf_counter() - start) / calls * 1e6)
    set_counting(True)
    return {mode: statistics.median(t) for mode, t in timings.items()}


def measure(
    connections: int,
    seconds: float,
    rounds: int,
    profile: str,
    every_s: float = SCRAPE_EVERY_S,
    control: bool = False,
) -> dict[str, Any]:
    """Both daemons loaded at once, `rounds` times; medians of the ratios and the runs."""
    with tempfile.TemporaryDirectory(prefix="scriptd-metrics-") as tmp:
        root = Path(tmp)
        off = _start(root, "off", None, profile)
        try:
            on = _start(root, "on", None if control else free_port(), profile)
            try:
                with Scraper(on.metrics_port, every_s) as scraper:
                    ratios = [_run_pair(off, on, connections, seconds, i % 2 == 1)
                              for i in range(rounds)]  # fmt: skip
            finally:
                on.daemon.stop()
        finally:
            off.daemon.stop()
    med = statistics.median
    cost = observe_cost_us()
    return {
        "connections": connections, "seconds": seconds, "rounds": rounds, "control": control,
        "scrape_every_s": every_s, "scrapes": scraper.count,
        "median_scrape_ms": med(scraper.wall_ms) if scraper.wall_ms else None,
        "off": {"rps": off.rps, "cpu_us_per_call": off.cpu_us},
        "on": {"rps": on.rps, "cpu_us_per_call": on.cpu_us},
        "ratios": ratios, "throughput_ratio": med(ratios),
        "cpu_ratio": med([a / b for a, b in zip(on.cpu_us, off.cpu_us, strict=True)]),
        "median_rps_off": med(off.rps), "median_rps_on": med(on.rps),
        "median_cpu_us_off": med(off.cpu_us), "median_cpu_us_on": med(on.cpu_us),
        "observe_us_on": cost["on"], "observe_us_off": cost["off"],
        "observe_share_of_cpu": (cost["on"] - cost["off"]) / med(off.cpu_us),
    }  # fmt: skip

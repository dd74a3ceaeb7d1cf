"""bench/invoke.py's table: its rows, each figure beside its baseline and its target."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from bench.loadgen import LoadResult


@dataclass
class Row:
    name: str
    figure: float
    baseline: float
    unit: str
    target: str
    met: bool
    detail: str = ""

    @property
    def ratio(self) -> float:
        return self.figure / self.baseline if self.baseline else float("nan")


def http_targets(rows: list[Row], many: int) -> dict[str, Any]:
    """The issue's targets of (a)/(b), each with its figure, in the JSON."""
    by_name = {row.name: row for row in rows}
    noop = by_name[f"throughput, {many} connections"]
    cpu = by_name[f"daemon CPU per call, {many} conn"]
    p50, p99 = by_name["p50, 1 connection"], by_name["p99, 1 connection"]
    out: dict[str, Any] = {
        "noop_x_bare_aiohttp": {"figure": noop.ratio, "target": ">= 1.0", "met": noop.met},
        "p50_added_ms_1_connection": {"figure": p50.figure - p50.baseline, "target": "<= 0.15",
                                      "met": p50.met},
        "p99_added_ms_1_connection": {"figure": p99.figure - p99.baseline, "target": "<= 1.0",
                                      "met": p99.met},
        "daemon_cpu_us_per_call": {"figure": cpu.figure, "target": "<= 40", "met": cpu.met},
    }  # fmt: skip
    nginx = by_name.get(f"nginx fixed 200, {many} connections")
    if nginx is not None:
        out["nginx_fixed_200_rps"] = {"figure": nginx.figure, "x_bare_aiohttp": nginx.ratio}
    return out


def http_rows(
    bare: dict[int, LoadResult], ours: dict[int, LoadResult], cpu: dict[int, float],
    bare_cpu: dict[int, float], nginx: LoadResult | None, replica_cpu: float = float("nan"),
) -> list[Row]:  # fmt: skip
    one_b, one_o = bare[1], ours[1]
    many = max(bare)
    ceiling = []
    if nginx is not None:
        ceiling = [Row(f"nginx fixed 200, {many} connections", nginx.rps, bare[many].rps,
                       "req/s", "(the ceiling)", True, "figure column = nginx")]  # fmt: skip
    return [
        Row(f"throughput, {many} connections", ours[many].rps, bare[many].rps, "req/s",
            ">= 1.00 x bare", ours[many].rps >= bare[many].rps),
        Row("throughput, 1 connection", one_o.rps, one_b.rps, "req/s", "(no target)", True),
        Row(f"daemon CPU per call, {many} conn", cpu[many], bare_cpu[many], "us", "<= 40 us",
            cpu[many] <= 40.0, "baseline = the bare server's CPU per request"),
        Row("replicas' CPU per call, all runs", replica_cpu, bare_cpu[many], "us", "(no target)",
            True, "the worker and its supervisor (cgroup); baseline = the bare server's"),
        Row("p50, 1 connection", one_o.p50_ms, one_b.p50_ms, "ms", "<= bare + 0.15 ms",
            one_o.p50_ms - one_b.p50_ms <= 0.15, f"+{one_o.p50_ms - one_b.p50_ms:.2f} ms"),
        Row("p99, 1 connection", one_o.p99_ms, one_b.p99_ms, "ms", "<= bare + 1 ms",
            one_o.p99_ms - one_b.p99_ms <= 1.0, f"+{one_o.p99_ms - one_b.p99_ms:.2f} ms"),
        Row(f"p50, {many} connections", ours[many].p50_ms, bare[many].p50_ms, "ms",
            "(no target)", True),
        Row(f"p99, {many} connections", ours[many].p99_ms, bare[many].p99_ms, "ms",
            "(no target)", True),
        *ceiling,
    ]  # fmt: skip


def replica_rows(
    first: list[float], spare: list[float], bwrap: list[float], respawn: list[float]
) -> list[Row]:
    f, b, r = statistics.median(first), statistics.median(bwrap), statistics.median(respawn)
    s = statistics.median(spare)
    return [
        Row(
            "(c) new replica, cold -> first answer",
            f,
            b,
            "ms",
            "<= 1.50 x bwrap",
            f <= 1.5 * b,
            "no spare sandbox: the whole launch on the path",
        ),
        Row(
            "(c) new replica from the parked spare",
            s,
            b,
            "ms",
            "<= 1.50 x bwrap",
            s <= 1.5 * b,
            "a scale-up or replacement: the spare released",
        ),
        Row(
            "(d) respawn: 504 -> next answer",
            r,
            20.0,
            "ms",
            "<= 20 ms",
            r <= 20.0,
            "baseline column = the target",
        ),
    ]


def metrics_rows(m: dict[str, Any]) -> list[Row]:
    c, ratio = m["connections"], m["throughput_ratio"]
    return [
        Row(f"(e) throughput on/off, {c} conn", ratio, 1.0, "x", ">= 0.97 x off",
            ratio >= 0.97, "median of the rounds' ratios"
            + (" - CONTROL: metrics off on both" if m["control"] else "")),
        Row("(e) daemon CPU per call, metrics on", m["median_cpu_us_on"],
            m["median_cpu_us_off"], "us", "(no target)", True,
            f"baseline = metrics off; median of the rounds' ratios {m['cpu_ratio']:.3f}"),
        Row("(e) observe_call, metrics on", m["observe_us_on"], m["observe_us_off"], "us",
            "(no target)", True, f"{m['observe_share_of_cpu']:.2%} of the CPU per call"),
    ]  # fmt: skip


def concurrency_rows(c: dict[str, Any]) -> list[Row]:
    noop, io = c["noop"], c["io"]
    ideal, got = io["ideal_rps"], io["load"]["rps"]
    need = 30 / io["concurrency"]  # the issue: >= 30 of the 32 calls in flight
    rounds = len(c["rounds"]["bare"])
    return [
        Row(f"(f) async no-op, conc {noop['concurrency']}, {noop['connections']} conn",
            noop["rps"], noop["bare_rps"], "req/s", ">= 2.00 x bare",
            noop["ratio_to_bare"] >= 2.0,
            f"median of {rounds} rounds' ratios to bare: {noop['ratio_to_bare']:.2f}"),
        Row("(f) same, against sync no-op conc 1", noop["rps"], noop["sync_c1_rps"], "req/s",
            "(no target)", True,
            f"median of the rounds' ratios {noop['ratio_to_sync_c1']:.2f}; sync conc 1 to "
            f"bare {noop['sync_c1_ratio_to_bare']:.2f}"),
        Row("(f) daemon CPU per call, conc 8", noop["cpu_us"], noop["sync_c1_cpu_us"], "us",
            "<= 40 us", noop["cpu_us"] <= 40.0, "baseline = the sync no-op at conc 1"),
        Row("(f) replica CPU per call, conc 8", noop.get("replica_cpu_us", float("nan")),
            noop["cpu_us"], "us", "(no target)", True,
            f"baseline = the daemon's; CFS periods its quota throttled it in: "
            f"{noop.get('throttled', 'n/a')}"),
        Row(f"(g) sleep 0.5 s, conc {io['concurrency']}, {io['load']['connections']} conn",
            got, ideal, "calls/s", f">= {need:.2f} x ideal", got >= need * ideal,
            f"ideal = {c['workers']} worker x {io['concurrency']} / 0.5 s; "
            f"{io['in_flight']:.1f} calls in flight on average"),
    ]  # fmt: skip


def print_table(rows: list[Row]) -> None:
    print(f"{'row':36} {'scriptd':>10} {'baseline':>10} {'ratio':>6}  {'target':18} result")
    for row in rows:
        extra = f"  ({row.detail})" if row.detail else ""
        print(
            f"{row.name:36} {row.figure:10.2f} {row.baseline:10.2f} {row.ratio:6.2f}  "
            f"{row.target:18} {'met' if row.met else 'MISSED'}{extra}"
        )


def loads_line(label: str, result: LoadResult) -> str:
    return (
        f"  {label:8} {result.connections:3} conn: {result.rps:9.0f} req/s  p50 "
        f"{result.p50_ms:6.2f} ms  p99 {result.p99_ms:6.2f} ms  ({result.requests} requests, "
        f"{result.errors} errors, {result.tool})"
    )

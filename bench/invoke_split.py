"""Where a call's time goes at 1 connection, call by call, and which part holds the
p99 tail: a split of each call's latency on the real daemon (issue 12, item 5).

A load generator of its own (one keep-alive connection, one request at a time, a
blocking socket) sends N calls and stamps each with time.monotonic_ns() before the
send and after the answer is read. The daemon runs under bench/invoke_split_probe.py,
which stamps five points of its call path on the same clock, and the deployed
function returns the worker's clock when it runs. Each call's latency is so cut into:

  client->front   send, loopback, the daemon's wake-up, up to the front's read
  front->submit   parse, key check, route, record (the gateway's work)
  submit->sent    encode and write the frame to the worker socket
  sent->worker    the worker's wake-up, read and decode, up to the function
  worker->daemon  the worker's encode and send, the daemon's wake-up and read
  daemon->client  the answer's mapping, record, encode and write (the front's flush)
  written->client the client's wake-up and read (below 0: the client had read the
                  answer before the daemon's write call returned)

Beside them, per call, from /proc/<pid>/task/<tid>/schedstat, the time each task
spent runnable but waiting for a CPU (wait:*, run_delay) and the time it ran (cpu:*):
the daemon's main thread, its other threads, the replica's processes (its cgroup's
tasks), and the load generator itself (wait only); the recorder's store writes that
overlapped the call (store-write); and over each round the replica cgroup's CPU
throttling (cpu.stat nr_throttled, throttled_time).

The same load generator runs against the bare aiohttp handler (bench/bare_server.py)
in alternating rounds, as the baseline. The daemon runs as by default, its metrics on
(--no-metrics: off), as bench/invoke.py runs it. Printed: p50/p99/p99.9 of both, the
same of the calls in which no task waited >= 1 ms for a CPU, and for the
daemon's calls the median of each span over all calls, its mean over the calls at or
past the p99, and the difference: where the tail's extra time is.

    .venv/bin/python -m bench.invoke_split [--calls 20000] [--rounds 4]

Run as root (sandboxes). Writes bench/results/invoke_split.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from bisect import bisect_left
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.invoke import BENCH, _wait_port
from bench.invoke_split_load import Calls, SchedStat, replica_tasks, run_calls, throttling
from tests.helpers import AdminClient, DaemonProcess, free_port, make_zip

RESULTS = BENCH / "results" / "invoke_split.json"
STAMP_MAIN = "import time\n\n\ndef noop():\n    return time.monotonic_ns()\n"
SPANS = ("client->front", "front->submit", "submit->sent", "sent->worker", "worker->daemon",
         "daemon->client", "written->client")  # fmt: skip
WAITS = ("wait:daemon", "wait:daemon-threads", "wait:replica", "wait:client")
CPUS = ("cpu:daemon", "cpu:daemon-threads", "cpu:replica")
WAITED_MS = 1.0  # a wait for a CPU this long counts as "descheduled" (a tick is 4 ms at HZ=250)


class ProbedDaemon(DaemonProcess):
    """The daemon run under bench/invoke_split_probe.py (stamps to `stamps_path`)."""

    stamps_path = Path()

    @property
    def argv(self) -> list[str]:
        argv = super().argv
        at = argv.index("daemon.main")
        return [*argv[:at], "bench.invoke_split_probe", str(self.stamps_path), *argv[at + 1 :]]

    def stamps(self) -> dict[str, list[int]]:
        """What the probe recorded since the last call (it clears its lists)."""
        assert self.proc is not None
        self.stamps_path.unlink(missing_ok=True)
        self.proc.send_signal(10 + 2)  # SIGUSR2
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                return json.loads(self.stamps_path.read_text())  # type: ignore[no-any-return]
            except (FileNotFoundError, json.JSONDecodeError):
                time.sleep(0.02)
        raise RuntimeError("the probed daemon wrote no stamps")


def deploy_stamp(admin: AdminClient, profile: str) -> str:
    archive = admin.upload(make_zip({"main.py": STAMP_MAIN}))
    admin.create("bench", archive_id=archive, profile=profile, deploy=True)
    script = admin.wait_status("bench")
    if script["status"] != "Deployed":
        raise RuntimeError(f"the script did not deploy: {script}")
    return str(admin.call("POST", "/v1/scripts/bench/keys", {}, expect=201)["key"])


# --- the split ---------------------------------------------------------------------------


def first_in(stamps: list[int], lo: int, hi: int) -> int | None:
    i = bisect_left(stamps, lo)
    return stamps[i] if i < len(stamps) and stamps[i] <= hi else None


def overlap_ms(t0: int, t1: int, starts: list[int], ends: list[int]) -> float:
    """How much of [t0, t1] the intervals (starts[i], ends[i]) cover, in ms."""
    i = max(0, bisect_left(ends, t0))
    covered = 0
    while i < len(starts) and starts[i] < t1:
        covered += max(0, min(t1, ends[i]) - max(t0, starts[i]))
        i += 1
    return covered / 1e6


def store_writes(stamps: dict[str, list[int]]) -> tuple[list[int], list[int]]:
    """The recorder's writes as (starts, ends): each start with the first end after it
    (a write under way when the stamps were taken has its end in the next batch)."""
    starts, ends = [], []
    for start in stamps["w0"]:
        i = bisect_left(stamps["w1"], start)
        if i < len(stamps["w1"]):
            starts.append(start)
            ends.append(stamps["w1"][i])
    return starts, ends


def split(
    calls: Calls, stamps: dict[str, list[int]], missing: dict[str, int]
) -> list[dict[str, float]]:
    """Each call's spans in ms (calls whose stamps are not all found are left out and
    counted in `missing` by the first point not found)."""
    writes = store_writes(stamps)
    rows = []
    # The answer's write returns after the client may have read it (the client runs
    # on the other core): its stamp is looked for up to the next call's send.
    ends = [*calls.sent[1:], calls.received[-1] + 10**9] if calls.sent else []
    for i, (t0, t1) in enumerate(zip(calls.sent, calls.received, strict=True)):
        fn = calls.worker[i]
        rx = first_in(stamps["rx"], t0, t1)
        sub = first_in(stamps["submit"], t0, t1)
        sent = first_in(stamps["sent"], t0, t1)
        wrx = first_in(stamps["wrx"], fn, t1) if fn is not None else None
        tx = first_in(stamps["tx"], wrx, ends[i]) if wrx is not None else None
        points = [t0, rx, sub, sent, fn, wrx, tx, t1]
        if any(p is None for p in points):
            name = ("rx", "submit", "sent", "fn", "wrx", "tx")[points.index(None) - 1]
            missing[name] = missing.get(name, 0) + 1
            continue
        row = {name: (b - a) / 1e6 for name, a, b in zip(SPANS, points, points[1:], strict=False)}  # type: ignore[operator]
        row["total"] = (t1 - t0) / 1e6
        row["store-write"] = overlap_ms(t0, t1, *writes)
        for name in (*WAITS, *CPUS):
            row[name] = calls.waits[name][i] / 1e6
        rows.append(row)
    return rows


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else float("nan")


def tail_table(rows: list[dict[str, float]]) -> list[dict[str, Any]]:
    """Per span: median over all calls, mean over the calls at or past the p99."""
    p99 = percentile([r["total"] for r in rows], 0.99)
    tail = [r for r in rows if r["total"] >= p99]
    out = []
    for name in ("total", *SPANS, *WAITS, *CPUS, "store-write"):
        med = statistics.median(r[name] for r in rows)
        tail_mean = statistics.fmean(r[name] for r in tail)
        biggest = sum(1 for r in tail if max(SPANS, key=lambda s: r[s]) == name)
        out.append({"span": name, "median_ms": med, "tail_mean_ms": tail_mean,
                    "tail_extra_ms": tail_mean - med, "largest_in_tail": biggest})  # fmt: skip
    return out


@dataclass
class Side:
    """One server's calls over the rounds."""

    name: str
    ms: list[float] = field(default_factory=list)
    waits: dict[str, list[float]] = field(default_factory=dict)  # ms per call
    rounds: list[dict[str, float]] = field(default_factory=list)

    def add(self, calls: Calls) -> None:
        ms = calls.latencies_ms()
        self.ms += ms
        for name, ns in calls.waits.items():
            if name in WAITS:
                self.waits.setdefault(name, []).extend(n / 1e6 for n in ns)
        self.rounds.append({"p50_ms": percentile(ms, 0.5), "p99_ms": percentile(ms, 0.99)})

    def undisturbed(self) -> dict[str, float]:
        """The calls in which no task waited >= WAITED_MS for a CPU: the code's own tail."""
        rows = zip(self.ms, *self.waits.values(), strict=True)
        return summary([row[0] for row in rows if max(row[1:]) < WAITED_MS])

    def waited(self) -> dict[str, float]:
        """Per task (and any): the share of calls in which it waited >= WAITED_MS."""
        out = {n: sum(1 for w in ws if w >= WAITED_MS) / len(ws) for n, ws in self.waits.items()}
        out["any"] = sum(1 for ws in zip(*self.waits.values(), strict=True)
                         if max(ws) >= WAITED_MS) / max(1, len(self.ms))  # fmt: skip
        return out


@dataclass
class Split:
    """The daemon's calls cut into spans, with its store writes and throttling."""

    rows: list[dict[str, float]] = field(default_factory=list)
    missing: dict[str, int] = field(default_factory=dict)
    writes_ms: list[float] = field(default_factory=list)
    throttled: dict[str, int] = field(default_factory=lambda: {"nr_throttled": 0,
                                                               "throttled_time": 0})  # fmt: skip

    def add(self, calls: Calls, stamps: dict[str, list[int]]) -> None:
        self.rows += split(calls, stamps, self.missing)
        starts, ends = store_writes(stamps)
        self.writes_ms += [(b - a) / 1e6 for a, b in zip(starts, ends, strict=True)]

    def result(self) -> dict[str, Any]:
        rows, writes = self.rows, self.writes_ms
        busy = sum(writes) / max(1e-9, sum(r["total"] for r in rows))
        return {"calls": len(rows), "missing": self.missing, "spans": tail_table(rows),
                "tail_waited": tail_waited(rows), "by_store_write": by_store_write(rows),
                "store_writes": {"count": len(writes), "median_ms": percentile(writes, 0.5),
                                 "p99_ms": percentile(writes, 0.99), "busy_share": busy},
                "replica_throttling": self.throttled}  # fmt: skip


def measure(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """Alternating rounds of `args.calls / args.rounds` calls on each server."""
    per_round = args.calls // args.rounds
    config = {} if args.no_metrics else {"metrics": {"listen": f"127.0.0.1:{free_port()}"}}
    daemon = ProbedDaemon(tmp, config, tmp / "cache")
    daemon.stamps_path = tmp / "stamps.json"
    bare_port = free_port()
    bare = subprocess.Popen([sys.executable, str(BENCH / "bare_server.py"), str(bare_port)])
    daemon.start()
    try:
        key = deploy_stamp(daemon.client(), args.profile)
        _wait_port(bare_port)
        assert daemon.proc is not None
        pids, dirs = replica_tasks(daemon.port)
        own = [os.getpid()]
        ours_waits = {"daemon": SchedStat([daemon.proc.pid], main_only=True),
                      "daemon-threads": SchedStat([daemon.proc.pid], main_only=False),
                      "replica": SchedStat(pids), "client": SchedStat(own)}  # fmt: skip
        bare_waits = {"daemon": SchedStat([bare.pid]), "client": SchedStat(own)}
        run_calls(daemon.port, key, 500, {})  # warm-up: caches the key
        run_calls(bare_port, None, 500, {})
        daemon.stamps()
        sides = {"bare": Side("bare"), "scriptd": Side("scriptd")}
        cut = Split()
        for i in range(args.rounds):
            for name in ("bare", "scriptd") if i % 2 == 0 else ("scriptd", "bare"):
                if name == "bare":
                    sides[name].add(run_calls(bare_port, None, per_round, bare_waits))
                    continue
                before = throttling(dirs)
                calls = run_calls(daemon.port, key, per_round, ours_waits)
                after = throttling(dirs)
                for k in cut.throttled:
                    cut.throttled[k] += after[k] - before[k]
                sides[name].add(calls)
                cut.add(calls, daemon.stamps())
    finally:
        daemon.stop()
        bare.terminate()
        bare.wait(10)
    return {
        **{name: summary(side.ms) | {"rounds": side.rounds, "waited": side.waited(),
                                     "undisturbed": side.undisturbed()}
           for name, side in sides.items()},
        "split": cut.result(),
        "replica_tasks": len(pids),
    }  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20000, help="calls per server in all")
    parser.add_argument("--rounds", type=int, default=4, help="alternating rounds")
    parser.add_argument("--profile", default="1vcpu-2gb")
    parser.add_argument("--no-metrics", action="store_true", help="the daemon's metrics off")
    parser.add_argument("--json", type=Path, default=RESULTS)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("run as root: replicas run in real sandboxes", file=sys.stderr)
        return 2
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="scriptd-split-") as tmp:
        result = measure(args, Path(tmp))
    result["loadavg"] = {"start": load_start, "end": os.getloadavg()}
    report(result, args)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1))
    print(f"\nwritten: {args.json}")
    return 0


def tail_waited(rows: list[dict[str, float]]) -> dict[str, float]:
    """Of the calls at or past the p99: the share in which some task waited >= WAITED_MS
    for a CPU, the median of the longest such wait, and the share in which the daemon's
    main thread ran >= WAITED_MS (its loop busy with more than the call)."""
    p99 = percentile([r["total"] for r in rows], 0.99)
    longest = [max(r[w] for w in WAITS) for r in rows if r["total"] >= p99]
    median = statistics.median(longest) if longest else float("nan")
    share = sum(1 for w in longest if w >= WAITED_MS) / max(1, len(longest))
    busy = [r["cpu:daemon"] for r in rows if r["total"] >= p99]
    busy_share = sum(1 for b in busy if b >= WAITED_MS) / max(1, len(busy))
    return {"share": share, "median_longest_ms": median, "daemon_busy_share": busy_share}


def by_store_write(rows: list[dict[str, float]]) -> dict[str, Any]:
    """The calls during which the recorder's thread wrote to the store, and the others."""
    during = [r["total"] for r in rows if r["store-write"] > 0]
    others = [r["total"] for r in rows if r["store-write"] <= 0]
    p99 = percentile([r["total"] for r in rows], 0.99)
    return {"during": summary(during), "others": summary(others),
            "tail_share_during": sum(1 for t in during if t >= p99)
            / max(1, sum(1 for r in rows if r["total"] >= p99))}  # fmt: skip


def summary(ms: list[float]) -> dict[str, float]:
    return {"calls": len(ms), "p50_ms": percentile(ms, 0.5), "p99_ms": percentile(ms, 0.99),
            "p999_ms": percentile(ms, 0.999)}  # fmt: skip


def report(result: dict[str, Any], args: argparse.Namespace) -> None:
    load = result["loadavg"]
    print(f"1 connection, {args.rounds} alternating rounds, {args.calls} calls per server, "
          f"profile {args.profile}, metrics {'off' if args.no_metrics else 'on'}; load "
          f"average {load['start'][0]:.2f} at start, {load['end'][0]:.2f} at end")  # fmt: skip
    bare, ours = result["bare"], result["scriptd"]
    for name, s in (("bare", bare), ("scriptd", ours)):
        rounds = " ".join(f"{r['p50_ms']:.3f}/{r['p99_ms']:.3f}" for r in s["rounds"])
        print(f"  {name:8} p50 {s['p50_ms']:6.3f} ms  p99 {s['p99_ms']:6.3f} ms  "
              f"p99.9 {s['p999_ms']:7.3f} ms  ({s['calls']} calls; p50/p99 per round: "
              f"{rounds})")  # fmt: skip
    print(f"  added    p50 {ours['p50_ms'] - bare['p50_ms']:+6.3f} ms  "
          f"p99 {ours['p99_ms'] - bare['p99_ms']:+6.3f} ms")  # fmt: skip
    quiet_b, quiet_o = bare["undisturbed"], ours["undisturbed"]
    print(f"  the calls in which no task waited >= {WAITED_MS:g} ms for a CPU: bare "
          f"{quiet_b['calls']}, p50 {quiet_b['p50_ms']:.3f} p99 {quiet_b['p99_ms']:.3f}; scriptd "
          f"{quiet_o['calls']}, p50 {quiet_o['p50_ms']:.3f} p99 {quiet_o['p99_ms']:.3f}; added "
          f"p50 {quiet_o['p50_ms'] - quiet_b['p50_ms']:+.3f} "
          f"p99 {quiet_o['p99_ms'] - quiet_b['p99_ms']:+.3f} ms")  # fmt: skip
    print(f"  calls in which a task waited >= {WAITED_MS:g} ms for a CPU (run_delay):")
    for name, s in (("bare", bare), ("scriptd", ours)):
        shares = "  ".join(f"{k.removeprefix('wait:')} {v * 100:.2f} %"
                           for k, v in s["waited"].items())  # fmt: skip
        print(f"    {name:8} {shares}")
    cut = result["split"]
    thr = cut["replica_throttling"]
    print(f"  replica cgroups ({result['replica_tasks']} tasks): throttled "
          f"{thr['nr_throttled']} periods, {thr['throttled_time'] / 1e6:.1f} ms")  # fmt: skip
    w, by = cut["store_writes"], cut["by_store_write"]
    print(
        f"  recorder store writes: {w['count']}, median {w['median_ms']:.2f} ms, p99 "
        f"{w['p99_ms']:.2f} ms, busy {w['busy_share'] * 100:.1f} % of the calls' time"
    )
    for name in ("during", "others"):
        s = by[name]
        print(f"    calls {name:6} a write: {s['calls']:6}  p50 {s['p50_ms']:.3f} ms  "
              f"p99 {s['p99_ms']:.3f} ms")  # fmt: skip
    print(f"    share of the tail (>= p99) during a write: {by['tail_share_during'] * 100:.0f} %")
    tw = cut["tail_waited"]
    print(
        f"\nscriptd's calls split ({cut['calls']} with every stamp; without: "
        f"{cut['missing']}), ms; tail = the calls at or past the p99; wait:* = runnable, "
        f"not running. In {tw['share'] * 100:.0f} % of the tail a task waited >= "
        f"{WAITED_MS:g} ms for a CPU (median longest wait {tw['median_longest_ms']:.2f} ms); "
        f"in {tw['daemon_busy_share'] * 100:.0f} % the daemon's main thread ran >= "
        f"{WAITED_MS:g} ms"
    )
    print(f"  {'span':20} {'median':>8} {'tail mean':>10} {'tail extra':>11} {'largest':>8}")
    for r in cut["spans"]:
        largest = str(r["largest_in_tail"]) if r["span"] in SPANS else ""
        print(f"  {r['span']:20} {r['median_ms']:8.3f} {r['tail_mean_ms']:10.3f} "
              f"{r['tail_extra_ms']:11.3f} {largest:>8}")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())

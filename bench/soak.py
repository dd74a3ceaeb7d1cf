"""A long run on the real daemon at half of its peak throughput, with everything that
churns, through public interfaces only (admin API over the unix socket, the gateway
over HTTP on loopback, /proc and the cgroup mounts).

At the start: the peak of a no-op call for a few seconds (wrk when installed, else
bench/loadgen.py's generator). Then for --minutes (default 10):
- open-loop calls of the main script at half that peak, 90 % that succeed and 10 %
  that raise (422);
- in a closed loop beside them, calls of another script that time out (504) and that
  run out of memory (502), one at a time;
- a redeploy of the main script every minute (a new version each time);
- an undeploy/deploy cycle of a third script, checked with a call after each deploy;
- key creations and deletions on the main script, each key used once before it goes.

Criteria, each printed PASS/FAIL (the exit status is 1 on a FAIL):
- calls by status: no 5xx other than the 502 and 504 the mix asks for;
- the daemon's RSS at the end grows by less than 10 % over the start (after warm-up);
- its open descriptors return to the count at the start;
- no process or cgroup of the daemon is left after it stopped.
Writes bench/results/soak.json.

Run as root:  .venv/bin/python -m bench.soak [--minutes 10]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.leftovers import find_leftovers, proc_stats
from bench.loadgen import run_load
from bench.soak_load import CallLog, Churn, open_loop
from tests.helpers import AdminClient, DaemonProcess, create_key, make_zip

RESULTS = Path(__file__).resolve().parent / "results" / "soak.json"
MAIN = """\
VERSION = {version}


def ok():
    return VERSION


def fail():
    raise ValueError("asked to fail")
"""
HOSTILE = """\
import time


def slow():
    time.sleep(30)


def hog():
    chunks = []
    while True:
        chunks.append(b"x" * (16 << 20))  # written pages: bytearray(n) would stay unbacked
"""
PROFILE = {
    "name": "soak", "label": "soak bench", "nominal_vcpus": 1, "nominal_memory_gib": 1,
    "vcpus": 1, "memory_gib": 0.25, "credits_per_hour": 0.01, "default": True,
}  # fmt: skip
EXPECTED_5XX = frozenset({502, 504})


def deploy(admin: AdminClient, name: str, source: str, **fields: Any) -> None:
    admin.create(name, make_zip({"main.py": source}), deploy=True, **fields)
    script = admin.wait_status(name)
    if script["status"] != "Deployed":
        raise RuntimeError(f"{name} did not deploy: {script}")


def setup(admin: AdminClient) -> dict[str, str]:
    deploy(admin, "soak", MAIN.format(version=0))
    deploy(admin, "hostile", HOSTILE, timeout_s=3)
    deploy(admin, "cycler", MAIN.format(version=0))
    return {name: create_key(admin, name) for name in ("soak", "hostile", "cycler")}


def measure_peak(port: int, key: str, seconds: int) -> float:
    url = f"http://127.0.0.1:{port}/v1/scripts/soak/functions/ok"
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    run_load(url, b"{}", headers, 4, 1)  # warm-up
    result = run_load(url, b"{}", headers, 8, seconds)
    print(f"peak: {result.rps:.0f} calls/s over {result.seconds:.1f} s, 8 connections, "
          f"{result.tool}, p50 {result.p50_ms:.2f} ms, {result.errors} errors")  # fmt: skip
    return result.rps


def sample(
    pid: int, log: CallLog, samples: list[tuple[int, int, int, int]], stop: threading.Event
) -> None:
    """The daemon's RSS, fds and the answers per second, every 10 s: a leak keeps a slope,
    a high-water mark goes flat; the answer rate shows when the daemon fell behind."""
    t0, answered = time.monotonic(), log.answered()
    while not stop.wait(10):
        now, total = proc_stats(pid), log.answered()
        rate = (total - answered) // 10
        samples.append((round(time.monotonic() - t0), now.rss_kib, now.fds, rate))
        answered = total


def settle_fds(pid: int, target: int, timeout: float) -> int:
    """Descriptors of `pid` once they are back at `target`, or after `timeout`."""
    deadline = time.monotonic() + timeout
    fds = proc_stats(pid).fds
    while fds > target and time.monotonic() < deadline:
        time.sleep(0.5)
        fds = proc_stats(pid).fds
    return fds


def run(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    cgroup_name = f"scriptd-soak-{os.getpid()}"
    cache = args.cache or root / "cache"
    markers = (str(root), str(cache))
    before = find_leftovers(cgroup_name, markers)
    config = {"profiles": [PROFILE], "sandbox": {"cgroup_name": cgroup_name},
              "dispatch": {"max_queue": 1000, "max_wait_s": 30}}  # fmt: skip
    daemon = DaemonProcess(root, config, cache)
    daemon.start()
    out: dict[str, Any] = {"cgroup_name": cgroup_name}
    try:
        assert daemon.proc is not None
        pid = daemon.proc.pid
        admin = daemon.client()
        keys = setup(admin)
        peak = measure_peak(daemon.port, keys["soak"], args.peak_seconds)
        rate = peak / 2
        log = CallLog()
        churn = Churn(admin, daemon.port, keys, log, MAIN)
        # The start figures once everything is warm (keys cached, replicas up).
        start = proc_stats(pid)
        print(f"soak: {args.minutes:g} min at {rate:.0f} calls/s; daemon pid {pid}, "
              f"RSS {start.rss_kib} KiB, {start.fds} fds")  # fmt: skip
        stop = threading.Event()
        samples: list[tuple[int, int, int, int]] = []  # (s, RSS KiB, fds, answers/s)
        threads = [
            *churn.threads(stop),
            threading.Thread(target=sample, args=(pid, log, samples, stop)),
        ]
        for t in threads:
            t.start()
        url = f"http://127.0.0.1:{daemon.port}/v1/scripts/soak/functions/"
        try:
            open_loop(url, keys["soak"], rate, args.minutes * 60, log)
        finally:
            stop.set()
            for t in threads:
                t.join()
        end_rss = proc_stats(pid).rss_kib
        end_fds = settle_fds(pid, start.fds, 30)
        out |= {"peak_rps": peak, "rate_rps": rate, "start": vars(start),
                "end": {"rss_kib": end_rss, "fds": end_fds}, "statuses": log.by_status(),
                "churn": churn.counts, "errors": churn.errors[:20],
                "failures": dict(log.failures), "samples": samples}  # fmt: skip
    finally:
        out["stop_code"] = daemon.stop(30)
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.with_suffix(".log").write_text(daemon.log())
    after = find_leftovers(cgroup_name, markers)
    out["leftovers"] = {"before": vars(before), "after": vars(after)}
    return out


def criteria(out: dict[str, Any]) -> list[tuple[str, str, bool]]:
    statuses: dict[str, dict[str, int]] = out["statuses"]
    bad = {f"{k} {code}": n for k, codes in statuses.items() for code, n in codes.items()
           if (int(code) >= 500 and int(code) not in EXPECTED_5XX) or int(code) == 0}  # fmt: skip
    not_sent = sum(n for codes in statuses.values() for code, n in codes.items() if code == "-1")
    sent = sum(n for codes in statuses.values() for code, n in codes.items() if code != "-1")
    start, end = out["start"], out["end"]
    growth = (end["rss_kib"] - start["rss_kib"]) / start["rss_kib"] * 100
    after = out["leftovers"]["after"]
    return [
        ("no unexpected 5xx (or failed connection)", f"{bad or 'none'}", not bad),
        ("open-loop calls not sent < 1 %", f"{not_sent} of {sent + not_sent}",
         not_sent < 0.01 * (sent + not_sent)),
        ("RSS grows < 10 %", f"{start['rss_kib']} -> {end['rss_kib']} KiB ({growth:+.1f} %)",
         growth < 10),
        ("fds back to the start count", f"{start['fds']} -> {end['fds']}",
         end["fds"] <= start["fds"]),
        ("no cgroup left below the root", f"{len(after['cgroups'])} {after['cgroups'][:3]}",
         not after["cgroups"]),
        ("no process left", f"{len(after['processes'])} {after['processes'][:3]}",
         not after["processes"]),
        ("no churn step failed", f"{len(out['errors'])} {out['errors'][:2]}", not out["errors"]),
    ]  # fmt: skip


def report(out: dict[str, Any]) -> bool:
    print(
        f"\n{'calls by status':<28} (peak {out['peak_rps']:.0f}/s, run at {out['rate_rps']:.0f}/s)"
    )
    for kind, codes in sorted(out["statuses"].items()):
        print(f"  {kind:<26} " + "  ".join(f"{c}: {n}" for c, n in sorted(codes.items())))
    print(f"{'churn':<28} " + "  ".join(f"{k}: {v}" for k, v in out["churn"].items()))
    if out["failures"]:
        print(f"{'failed connections':<28} {out['failures']}")
    series = out["samples"][:: max(1, len(out["samples"]) // 8)]
    print(f"{'s: RSS KiB/fds/answers per s':<28} "
          + "  ".join(f"{t}:{r}/{f}/{a}" for t, r, f, a in series))  # fmt: skip
    if len(out["samples"]) >= 2:  # a leak keeps a slope; a high-water mark goes flat
        mid, last = out["samples"][len(out["samples"]) // 2], out["samples"][-1]
        print(f"{'RSS, second half of the run':<28} {mid[1]} -> {last[1]} KiB "
              f"({(last[1] - mid[1]) / mid[1] * 100:+.1f} %, informative)")  # fmt: skip
    print(f"{'daemon stopped with':<28} {out['stop_code']}; cgroup roots left (empty dirs): "
          f"{len(out['leftovers']['after']['roots'])}")  # fmt: skip
    print(f"\n{'criterion':<42} {'figure (start -> end / found)':<44} result")
    rows = criteria(out)
    for name, figure, ok in rows:
        print(f"{name:<42} {figure:<44} {'PASS' if ok else 'FAIL'}")
    out["criteria"] = [{"name": n, "figure": f, "pass": ok} for n, f, ok in rows]
    return all(ok for _, _, ok in rows)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=10)
    p.add_argument("--peak-seconds", type=int, default=5)
    p.add_argument("--cache", type=Path, default=None, help="build cache dir to reuse")
    p.add_argument("--json", type=Path, default=RESULTS)
    args = p.parse_args()
    if os.geteuid() != 0:
        print("bench/soak.py needs root (real sandboxes)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="scriptd-soak-") as tmp:
        out = run(args, Path(tmp))
    passed = report(out)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out | {"args": {"minutes": args.minutes}}, indent=1))
    print(f"\nwritten: {args.json}\n{'PASS' if passed else 'FAIL'}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())

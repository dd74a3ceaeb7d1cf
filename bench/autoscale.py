"""Autoscaling under rising load: a CPU-bound function on the real daemon, real
sandboxed replicas, real HTTP on loopback.

The load is open-loop (calls sent at a fixed rate, whatever the answers do), from this
bench's own generator, in steps: two rates one replica serves below the target (20 %
and 40 % of its quota), then a jump to 75 % of what max replicas serve at full quota
(saturation: one replica cannot keep up at all), then nothing. The daemon's own view
is sampled five times a second (`GET /v1/scripts/NAME/events`: replicas counted by
the pool, ready ones, the autoscaler's last inputs). Printed and written as JSON, drawn as a PNG:

- time from saturation (the start of the step one replica cannot serve) until the
  pool's count reaches max, in seconds and in ticks (target: within 2 ticks), and
  until max replicas are ready;
- replicas and utilization over time;
- scale-down after the load stops: it must wait the stabilisation window (short
  here) and then go to min.

Run as root:  .venv/bin/python bench/autoscale.py [--tick 1] [--window 8] [--max 3]
              [--json bench/results/autoscale.json] [--png bench/results/autoscale.png]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.helpers import create_key, make_zip, start_daemon

MAIN = """\
import time


def burn(ms=50):
    end = time.process_time() + ms / 1000
    n = 0
    while time.process_time() < end:
        n += 1
    return n
"""
VCPUS = 0.5


@dataclass
class Sample:
    t: float
    replicas: int | None
    ready: int | None
    utilization_pct: float | None
    queue_wait_s: float | None
    offered_rps: float


@dataclass
class Run:
    samples: list[Sample] = field(default_factory=list)
    stages: list[tuple[float, float]] = field(default_factory=list)  # (start t, rate)
    statuses: dict[int, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    rate: float = 0.0


async def _generate(url: str, key: str, stages: list[tuple[float, float]], run: Run) -> None:
    """Open loop: for each (seconds, rate), one call every 1/rate s, not waiting."""
    if not url.startswith("http://127."):
        raise ValueError(f"refusing to load a non-loopback address: {url}")
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    body = json.dumps({"ms": 50}).encode()
    t0 = time.monotonic()
    pending: set[asyncio.Task[None]] = set()
    limits = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=limits) as session:

        async def one() -> None:
            start = time.monotonic()
            try:
                async with session.post(url, data=body, headers=headers) as r:
                    await r.read()
                    status = r.status
            except aiohttp.ClientError:
                status = 0
            run.statuses[status] = run.statuses.get(status, 0) + 1
            run.latencies_ms.append((time.monotonic() - start) * 1000)

        for seconds, rate in stages:
            run.rate = rate
            run.stages.append((time.monotonic() - t0, rate))
            end = time.monotonic() + seconds
            next_at = time.monotonic()
            while time.monotonic() < end:
                if rate > 0:
                    task = asyncio.create_task(one())
                    pending.add(task)
                    task.add_done_callback(pending.discard)
                    next_at += 1 / rate
                else:
                    next_at += 0.1
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        run.rate = 0.0
        await asyncio.gather(*pending, return_exceptions=True)


def _sample(admin: Any, name: str, t0: float, run: Run, stop: threading.Event) -> None:
    while not stop.is_set():
        a = admin.get(f"/v1/scripts/{name}/events?kind=scaled&limit=1")["autoscaling"]
        d = a.get("last_decision") or {}
        run.samples.append(
            Sample(time.monotonic() - t0, a.get("replicas"), a.get("ready"),
                   d.get("utilization_pct"), d.get("queue_wait_s"), run.rate)
        )  # fmt: skip
        time.sleep(0.2)


def _first(samples: list[Sample], after: float, pred: Any) -> float | None:
    return next((s.t for s in samples if s.t >= after and pred(s)), None)


def figures(run: Run, args: argparse.Namespace, stop_t: float) -> dict[str, Any]:
    sat_t = run.stages[2][0]  # the jump one replica cannot serve
    to_max = _first(run.samples, sat_t, lambda s: s.replicas == args.max)
    ready_max = _first(run.samples, sat_t, lambda s: s.ready == args.max)
    back_min = _first(run.samples, stop_t, lambda s: s.replicas == 1)
    # Queued calls still run after the load stops: the window counts from the last busy
    # tick, one tick before the first idle decision shows up (samples repeat a decision).
    busy = [s.t for s in run.samples if (s.utilization_pct or 0) >= args.target * 0.9]
    idle = _first(
        run.samples,
        max(busy, default=stop_t) + 1e-6,
        lambda s: s.utilization_pct == 0 or (s.utilization_pct or 0) < args.target * 0.9,
    )
    last_busy = (idle - args.tick) if idle is not None else stop_t
    ok = sum(n for code, n in run.statuses.items() if code == 200)
    return {
        "tick_s": args.tick,
        "window_s": args.window,
        "max_replicas": args.max,
        "saturation_at_s": round(sat_t, 2),
        "to_max_s": None if to_max is None else round(to_max - sat_t, 2),
        "to_max_ticks": None if to_max is None else round((to_max - sat_t) / args.tick, 2),
        "to_max_ready_s": None if ready_max is None else round(ready_max - sat_t, 2),
        "load_stopped_at_s": round(stop_t, 2),
        "scale_down_s": None if back_min is None else round(back_min - stop_t, 2),
        "last_busy_tick_at_s": round(last_busy, 2),
        "down_after_last_busy_s": None if back_min is None else round(back_min - last_busy, 2),
        "calls_ok": ok,
        "calls_other": {str(k): v for k, v in run.statuses.items() if k != 200},
        "p50_ms": round(sorted(run.latencies_ms)[len(run.latencies_ms) // 2], 1),
        "target_met": to_max is not None and (to_max - sat_t) <= 2 * args.tick + 0.2,
    }


def plot(run: Run, f: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s.t for s in run.samples]
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(10, 6))
    top.step(t, [s.replicas or 0 for s in run.samples], where="post", label="replicas (pool)")
    top.step(t, [s.ready or 0 for s in run.samples], where="post", label="ready", ls="--")
    top.set_ylabel("replicas")
    top.set_ylim(0, f["max_replicas"] + 0.5)
    bottom.plot(t, [s.utilization_pct or 0 for s in run.samples], label="avg CPU % of quota")
    bottom.plot(t, [s.offered_rps * 10 for s in run.samples], label="offered calls/s x 10")
    bottom.set_ylabel("%")
    bottom.set_xlabel("seconds")
    for ax in (top, bottom):
        ax.axvline(f["saturation_at_s"], color="red", lw=0.8, label="saturation")
        ax.axvline(f["load_stopped_at_s"], color="gray", lw=0.8, label="load stops")
        ax.legend(loc="upper left", fontsize=8)
    top.set_title(
        f"max in {f['to_max_s']} s ({f['to_max_ticks']} ticks of {f['tick_s']} s); "
        f"down {f['scale_down_s']} s after the load (window {f['window_s']} s)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tick", type=float, default=1.0, help="autoscale.tick_s")
    p.add_argument("--window", type=float, default=8.0, help="autoscale.stabilisation_s")
    p.add_argument("--max", type=int, default=3, help="max replicas")
    p.add_argument("--target", type=int, default=50, help="cpu_target %%")
    p.add_argument("--json", type=Path, default=Path("bench/results/autoscale.json"))
    p.add_argument("--png", type=Path, default=Path("bench/results/autoscale.png"))
    args = p.parse_args()
    if os.geteuid() != 0:
        print("bench/autoscale.py needs root (real sandboxes)", file=sys.stderr)
        return 2
    # One replica serves 10 calls/s of 50 ms CPU at 0.5 vCPU (100 %), 5 at a 50 % target.
    # Saturation: 75 % of what max replicas serve at full quota, 7.5 x one replica.
    stages = [(6.0, 2.0), (6.0, 4.0), (12.0, 7.5 * args.max), (args.window + 8 * args.tick, 0)]
    config = {
        "profiles": [{"name": "bench", "label": "bench", "nominal_vcpus": 1,
                      "nominal_memory_gib": 1, "vcpus": VCPUS, "memory_gib": 0.25,
                      "credits_per_hour": 0.07698, "default": True}],
        "autoscale": {"tick_s": args.tick, "stabilisation_s": args.window, "queue_wait_s": 1},
        "dispatch": {"max_queue": 1000, "max_wait_s": 30},
    }  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        daemon = start_daemon(Path(tmp) / "scriptd", config)
        try:
            admin = daemon.client()
            admin.create("burn", make_zip({"main.py": MAIN}), deploy=True, min_replicas=1,
                         max_replicas=args.max, cpu_target=args.target)  # fmt: skip
            assert admin.wait_status("burn")["status"] == "Deployed"
            key = create_key(admin, "burn")
            run, stop = Run(), threading.Event()
            t0 = time.monotonic()
            sampler = threading.Thread(target=_sample, args=(admin, "burn", t0, run, stop))
            sampler.start()
            url = f"http://127.0.0.1:{daemon.port}/v1/scripts/burn/functions/burn"
            try:
                asyncio.run(_generate(url, key, stages, run))
            finally:
                stop.set()
                sampler.join()
        finally:
            daemon.stop()
    stop_t = run.stages[3][0]
    f = figures(run, args, stop_t)
    print(f"{'figure':<28} value")
    for k, v in f.items():
        print(f"{k:<28} {v}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.png.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps({"figures": f, "stages": run.stages,
                    "samples": [asdict(s) for s in run.samples]}, indent=1)
    )  # fmt: skip
    plot(run, f, args.png)
    print(f"wrote {args.json} and {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

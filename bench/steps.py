"""A trivial code step against a trivial function, side by side in one run.

(a) worker: the runtime alone (runtimes/supervisor.py as a plain subprocess, no
    sandbox, tests/runtimes/client.py speaking the protocol): a `run` frame of a step
    whose body is `outputs.x = inputs.x` against a `call` frame of `def echo(x): return x`.
(b) gateway: the real daemon, real sandboxed replicas (one worker each), real HTTP on
    loopback: POST /v1/scripts/S/run against POST /v1/scripts/F/functions/echo, one
    keep-alive connection each.
Calls alternate between the two kinds (A, B, A, B, ...) so that a noisy neighbour
hits both alike; the table gives p50, p99 and calls per second (sequential, one
caller) of each, and the step's cost as a ratio of the function's. Target: a step
costs at most 10 % more than a function call.

Run (b needs root):  .venv/bin/python bench/steps.py [--calls 2000] [--skip-gateway]
                     [--json bench/results/steps.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.helpers import TINY_PROFILES, create_key, make_zip, start_daemon
from tests.runtimes.client import Supervisor

STEP_MAIN = "outputs.x = inputs.x\n"
STEP_TOML = '[inputs]\nx = "s"\n\n[outputs]\nx = "s"\n'
STEP_SPEC = json.dumps({"inputs": {"x": "s"}, "outputs": {"x": "s"}})
FUNCTION_MAIN = "def echo(x):\n    return x\n"


def timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000


def alternate(step: Callable[[], Any], function: Callable[[], Any], calls: int) -> dict[str, Any]:
    for _ in range(min(100, calls)):  # warm both
        step()
        function()
    times: dict[str, list[float]] = {"step": [], "function": []}
    for _ in range(calls):
        times["step"].append(timed(step))
        times["function"].append(timed(function))
    return {kind: figures(ms) for kind, ms in times.items()}


def figures(ms: list[float]) -> dict[str, float]:
    ms = sorted(ms)
    return {
        "p50_ms": round(statistics.median(ms), 4),
        "p99_ms": round(ms[int(len(ms) * 0.99) - 1], 4),
        "calls_per_s": round(len(ms) / (sum(ms) / 1000), 1),
    }


def worker_level(root: Path, calls: int) -> dict[str, Any]:
    (root / "step").mkdir()
    (root / "step" / "main.py").write_text(STEP_MAIN)
    (root / "fn").mkdir()
    (root / "fn" / "main.py").write_text(FUNCTION_MAIN)
    step = Supervisor("python", root / "step", 1, "--kind", "step", "--step-spec", STEP_SPEC)
    function = Supervisor("python", root / "fn", 1)
    try:
        step.start(1)
        function.start(1)
        sw, fw = step.worker(), function.worker()

        def run_step() -> None:
            sw.send({"t": "run", "id": "r", "inputs": {"x": {"s": "hello"}}})
            assert sw.recv()["ok"]

        def call_function() -> None:
            assert fw.call("echo", {"x": "hello"})["ok"]

        return alternate(run_step, call_function, calls)
    finally:
        step.close()
        function.close()


def gateway_level(root: Path, calls: int) -> dict[str, Any]:
    daemon = start_daemon(root / "daemon", TINY_PROFILES, None)
    try:
        admin = daemon.client()
        admin.create("step", make_zip({"main.py": STEP_MAIN, "step.toml": STEP_TOML}), deploy=True)
        admin.create("fn", make_zip({"main.py": FUNCTION_MAIN}), deploy=True)
        for name in ("step", "fn"):
            assert admin.wait_status(name)["status"] == "Deployed", admin.script(name)
        sg, fg = daemon.gateway(create_key(admin, "step")), daemon.gateway(create_key(admin, "fn"))
        step_body = b'{"inputs":{"x":{"s":"hello"}}}'
        headers = {"Content-Type": "application/json"}

        def run_step() -> None:
            assert sg.request("POST", "/v1/scripts/step/run", step_body, headers).status == 200

        def call_function() -> None:
            assert fg.call("fn", "echo", {"x": "hello"}).status == 200

        try:
            return alternate(run_step, call_function, calls)
        finally:
            sg.close()
            fg.close()
    finally:
        daemon.stop()


def table(results: dict[str, Any]) -> str:
    lines = [f"{'level':10} {'kind':9} {'p50 ms':>9} {'p99 ms':>9} {'calls/s':>9}  step/function"]
    for level, kinds in results.items():
        ratio = kinds["step"]["p50_ms"] / kinds["function"]["p50_ms"]
        for kind in ("function", "step"):
            f = kinds[kind]
            extra = f"  p50 x{ratio:.3f}" if kind == "step" else ""
            lines.append(f"{level:10} {kind:9} {f['p50_ms']:9.3f} {f['p99_ms']:9.3f} "
                         f"{f['calls_per_s']:9.1f}{extra}")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--skip-gateway", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-steps-") as tmp:
        results["worker"] = worker_level(Path(tmp), args.calls)
        if not args.skip_gateway:
            results["gateway"] = gateway_level(Path(tmp), args.calls)
    print(table(results))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"calls": args.calls, **results}, indent=2))


if __name__ == "__main__":
    main()

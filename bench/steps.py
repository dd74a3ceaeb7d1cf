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

(c) cold start: a replica's supervisor started on the steps' base environment (built by
    the real builder: steps.base_packages) whose first run imports numpy, against one
    on an empty venv whose step imports nothing: from the process start to the first
    answer (hello, worker ready, first run). Runtime level (no sandbox: its own cost is
    the same for both); the two take turns, medians of --cold-runs each.

Run (b, c need root):  .venv/bin/python bench/steps.py [--calls 2000] [--skip-gateway]
                       [--cold-runs 10] [--skip-cold] [--json bench/results/steps.json]
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


NUMPY_STEP = "import numpy\noutputs.x = str(int(numpy.arange(4).sum()))\n"
PLAIN_STEP = "outputs.x = str(4)\n"
COLD_SPEC = json.dumps({"inputs": {}, "outputs": {"x": "s"}})


def build_envs(root: Path) -> dict[str, Path]:
    """The base environment and an empty venv, by the real builder (as root)."""
    import asyncio

    from daemon.build.builder import Builder
    from daemon.build.catalogue import discover_runtimes
    from daemon.config.daemon_config import Config

    config = Config(state_dir=root / "state")
    python = discover_runtimes(config).pick("python", None)
    assert python is not None, "no python runtime on this host"
    (root / "empty-src").mkdir()
    builder = Builder(config)

    async def both() -> dict[str, Path]:
        base = await builder.base_env(python, config.steps_base_packages, root / "base.log")
        empty = await builder.build("python", python, root / "empty-src", root / "empty.log")
        return {"base": base.env_dir, "empty": empty.env_dir}

    return asyncio.run(both())


def cold_start_ms(env: Path, source: Path) -> float:
    t0 = time.perf_counter()
    sup = Supervisor("python", source, 1, "--kind", "step", "--step-spec", COLD_SPEC,
                     python=str(env / "bin" / "python"), flags=("-I", "-S"))  # fmt: skip
    try:
        sup.start(1, timeout=60)
        worker = sup.worker()
        worker.send({"t": "run", "id": "r", "inputs": {}})
        reply = worker.recv(60)
        assert reply.get("ok"), reply
        return (time.perf_counter() - t0) * 1000
    finally:
        sup.close()


def cold_level(root: Path, runs: int) -> dict[str, Any]:
    envs = build_envs(root)
    # (environment, step body) of each row: the base environment's own cost shows in
    # "base-plain", numpy's import in "base" against it.
    cases = {"empty": ("empty", PLAIN_STEP), "base-plain": ("base", PLAIN_STEP),
             "base": ("base", NUMPY_STEP)}  # fmt: skip
    for name, (_env, body) in cases.items():
        (root / f"cold-{name}").mkdir()
        (root / f"cold-{name}" / "main.py").write_text(body)
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(runs):  # in turns, so that the host's load falls on all alike
        for name, (env, _body) in cases.items():
            times[name].append(cold_start_ms(envs[env], root / f"cold-{name}"))
    return {name: {"p50_ms": round(statistics.median(ms), 1), "min_ms": round(min(ms), 1),
                   "max_ms": round(max(ms), 1), "runs": len(ms)}
            for name, ms in times.items()}  # fmt: skip


def cold_table(cold: dict[str, Any]) -> str:
    ratio = cold["base"]["p50_ms"] / cold["empty"]["p50_ms"]
    return "\n".join([
        f"{'cold start (start to first answer)':46} {'p50 ms':>8} {'min':>8} {'max':>8}",
        f"{'empty venv, step imports nothing':46} {cold['empty']['p50_ms']:8.1f} "
        f"{cold['empty']['min_ms']:8.1f} {cold['empty']['max_ms']:8.1f}",
        f"{'base environment, step imports nothing':46} {cold['base-plain']['p50_ms']:8.1f} "
        f"{cold['base-plain']['min_ms']:8.1f} {cold['base-plain']['max_ms']:8.1f}  p50 x"
        f"{cold['base-plain']['p50_ms'] / cold['empty']['p50_ms']:.2f}",
        f"{'base environment, step imports numpy':46} {cold['base']['p50_ms']:8.1f} "
        f"{cold['base']['min_ms']:8.1f} {cold['base']['max_ms']:8.1f}  p50 x{ratio:.2f}",
    ])  # fmt: skip


def table(results: dict[str, Any]) -> str:
    lines = [f"{'level':10} {'kind':9} {'p50 ms':>9} {'p99 ms':>9} {'calls/s':>9}  step/function"]
    for level, kinds in results.items():
        if level == "cold":
            continue
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
    parser.add_argument("--skip-cold", action="store_true")
    parser.add_argument("--cold-runs", type=int, default=10)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results: dict[str, Any] = {}
    # The builder's tools run as the build user: keep the temp folder reachable for it.
    with tempfile.TemporaryDirectory(prefix="bench-steps-", dir="/var/tmp") as tmp:
        os.chmod(tmp, 0o755)
        results["worker"] = worker_level(Path(tmp), args.calls)
        if not args.skip_gateway:
            results["gateway"] = gateway_level(Path(tmp), args.calls)
        if not args.skip_cold:
            results["cold"] = cold_level(Path(tmp), args.cold_runs)
    print(table(results))
    if "cold" in results:
        print(cold_table(results["cold"]))
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"calls": args.calls, **results}, indent=2))


if __name__ == "__main__":
    main()

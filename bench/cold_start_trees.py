"""A new replica's first answer from two source trees (a git revision, main by default,
and this checkout), in the same interleaved rounds: one long-lived process per tree
starts a replica on each round (alternating which goes first), bwrap once per round,
medians and x bwrap.
Two runs of bench/invoke.py one after the other differ by ±0.1 x bwrap on a shared host:
only rounds interleaved like these resolve a change of a few ms.

Run as root, with this checkout's venv:
  .venv/bin/python -m bench.cold_start_trees [--a main] [--runs 60]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

from bench.invoke_ab import exported
from bench.invoke_replica import bwrap_times

HERE = Path(__file__).resolve().parents[1]
# One replica per "go" line on stdin, its first-answer time (ms) printed back.
WORKER = """
import asyncio, sys, tempfile
from dataclasses import replace
from pathlib import Path
import uvloop, sandbox
from bench.invoke_replica import _one_replica, _Stamps, _target, make_venv
from daemon.serving.launcher import LaunchSettings, SandboxLauncher
from daemon.serving.workspace_image import release

async def main(tag, uid_base):
    loop = asyncio.get_running_loop()
    with tempfile.TemporaryDirectory(prefix=f"scriptd-trees-{tag}-") as tmp:
        root = Path(tmp)
        target = _target(root, make_venv(root))
        cgroups = sandbox.CgroupRoot.create(f"scriptd-bench-trees-{tag}")
        settings = replace(LaunchSettings(), uid_base=uid_base)
        launcher = SandboxLauncher(target, settings, cgroups)
        try:
            with _Stamps() as stamps:
                print("ready", flush=True)
                while (await loop.run_in_executor(None, sys.stdin.readline)).strip() == "go":
                    print((await _one_replica(launcher, stamps))[0], flush=True)
        finally:
            cgroups.cleanup()
            release(target.workspace_dir)

uvloop.run(main(sys.argv[1], int(sys.argv[2])))
"""


def start(tree: Path, tag: str, uid_base: int) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-c", WORKER, tag, str(uid_base)], cwd=tree, text=True,
        env={**os.environ, "PYTHONPATH": str(tree)}, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None and process.stdout.readline().strip() == "ready"
    return process


def one(process: subprocess.Popen[str]) -> float:
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write("go\n")
    process.stdin.flush()
    return float(process.stdout.readline())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--a", default="main", help="git revision A (the baseline)")
    parser.add_argument("--runs", type=int, default=60)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("run as root: replicas run in real sandboxes", file=sys.stderr)
        return 2
    with exported(args.a) as other:
        return compare({args.a: other, "this": HERE}, args.runs)


def compare(trees: dict[str, Path], runs: int) -> int:
    processes = {name: start(tree, f"t{n}", 300_000 + 10_000 * n)
                 for n, (name, tree) in enumerate(trees.items())}  # fmt: skip
    times: dict[str, list[float]] = {name: [] for name in trees}
    bwrap: list[float] = []
    load = os.getloadavg()[0]
    try:
        for i in range(runs + 2):  # two warm-up rounds
            bw = bwrap_times(1)[0]
            order = list(trees) if i % 2 == 0 else list(reversed(trees))
            firsts = {name: one(processes[name]) for name in order}
            if i >= 2:
                bwrap.append(bw)
                for name, ms in firsts.items():
                    times[name].append(ms)
    finally:
        for process in processes.values():
            assert process.stdin is not None
            process.stdin.close()
            process.wait()
    med = statistics.median
    print(f"{runs} interleaved rounds, load avg {load:.1f} -> {os.getloadavg()[0]:.1f}; "
          f"bwrap python3 -I -S -c pass {med(bwrap):.2f} ms")  # fmt: skip
    for name, tree in trees.items():
        print(f"{name:8} {med(times[name]):7.2f} ms  {med(times[name]) / med(bwrap):.2f} x bwrap"
              f"  ({tree})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

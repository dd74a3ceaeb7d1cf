"""Whether compiling the gateway's call path with mypyc pays: the Python CPU per call of
bench/call_path_cpu.py on a revision as it is and on the same revision with MODULES
compiled, runs interleaved in one process tree so a busy host's load falls on both.

Each side is exported from git (`git archive`) into a temp dir; mypyc (it ships with
mypy, a dev dependency; it needs gcc and the interpreter's headers) compiles MODULES in
one of them, the .so files beside the .py they shadow. Prints each round's min/median,
then the medians of the rounds and the ratio compiled / pure.

    .venv/bin/python -m bench.mypyc_call_path [--rev HEAD] [--rounds 3] [--runs 5]
        [--keep DIR]

--keep DIR leaves the compiled tree in DIR (DIR must not exist), so the real daemon can
be measured on it: `.venv/bin/python -m bench.invoke_ab --a HEAD --b DIR`.
The result, and why the daemon does not ship compiled: docs/performance.md, "Compiling
the call path with mypyc".
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.helpers import REPO

# The modules bench/call_path_cpu.py spends its time in (cProfile, own time), and the
# small ones they call per call: the front, the call route, the gateway and its record,
# the key cache, the per-call metrics, the dispatcher, the worker and the wire codec.
MODULES = (
    "daemon/gateway/front.py",
    "daemon/gateway/front_types.py",
    "daemon/gateway/front_slots.py",
    "daemon/gateway/calls.py",
    "daemon/gateway/app.py",
    "daemon/gateway/recorder.py",
    "daemon/gateway/call_paths.py",
    "daemon/gateway/serving_table.py",
    "daemon/serving/dispatcher.py",
    "daemon/serving/worker.py",
    "daemon/serving/wire.py",
    "daemon/serving/call_outcome.py",
    "daemon/serving/pending_call.py",
    "daemon/metrics/calls.py",
    "daemon/keys/checker.py",
)
RESULT = re.compile(r"min ([\d.]+) us, median ([\d.]+) us")


def export(rev: str, dest: Path) -> None:
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev], check=True,
                             capture_output=True).stdout  # fmt: skip
    dest.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)


def compile_tree(tree: Path) -> float:
    """Compiles MODULES in `tree`; returns the seconds it took."""
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "mypyc", *MODULES], cwd=tree,
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"mypyc failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return time.monotonic() - started


def call_path_cpu(tree: Path, runs: int) -> tuple[float, float]:
    """(min, median) Python CPU per call in µs of bench/call_path_cpu.py run in `tree`."""
    out = subprocess.run([sys.executable, "-m", "bench.call_path_cpu", "--runs", str(runs)],
                         cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)}, check=True,
                         capture_output=True, text=True).stdout  # fmt: skip
    found = RESULT.search(out)
    if found is None:
        raise RuntimeError(f"unexpected output from {tree}: {out}")
    return float(found[1]), float(found[2])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rev", default="HEAD", help="the git revision to measure")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=5, help="call_path_cpu's --runs")
    parser.add_argument("--keep", type=Path, default=None, help="leave the compiled tree here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="scriptd-mypyc-") as tmp:
        pure, compiled = Path(tmp) / "pure", args.keep or Path(tmp) / "compiled"
        export(args.rev, pure)
        export(args.rev, compiled)
        print(f"mypyc: {len(MODULES)} modules compiled in {compile_tree(compiled):.0f} s")
        medians: dict[str, list[float]] = {"pure": [], "compiled": []}
        for i in range(args.rounds):
            order = [("pure", pure), ("compiled", compiled)]
            for label, tree in order if i % 2 == 0 else reversed(order):
                low, median = call_path_cpu(tree, args.runs)
                medians[label].append(median)
                print(f"round {i + 1} {label:8} min {low:6.2f} us, median {median:6.2f} us")
        pure_us, compiled_us = (statistics.median(medians[k]) for k in ("pure", "compiled"))
        print(f"median of the rounds' medians: pure {pure_us:.2f} us, compiled "
              f"{compiled_us:.2f} us ({compiled_us / pure_us:.2f} x)")  # fmt: skip
        if args.keep is not None:
            shutil.rmtree(compiled / "build", ignore_errors=True)
            print(f"compiled tree kept in {compiled}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

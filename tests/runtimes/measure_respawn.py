"""Measure worker respawn: kill_worker -> new `worker` message -> first answer.

Not a test (timings belong in bench/); run by hand:
    .venv/bin/python -m tests.runtimes.measure_respawn [--rounds 30]
It prints, for python fork mode, python spawn mode and node (spawn mode
with and without a spare booted ahead), the median and
p90 of (a) kill_worker sent -> new worker announced and (b) -> first call on
the new worker answered, next to the bare start of each interpreter.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.runtimes.client import Supervisor
from tests.runtimes.projects import NODE_CJS, PYTHON, write_project


def respawn_times(language: str, source: Path, rounds: int, *extra: str) -> tuple[list, list]:
    sup = Supervisor(language, source, 1, *extra)
    announced, answered = [], []
    try:
        sup.start(1)
        for _ in range(rounds):
            time.sleep(0.3)  # steady state: a spare (spawn mode) has had time to boot
            old = sup.worker()
            t0 = time.perf_counter()
            sup.send({"t": "kill_worker", "worker": old.id})
            info = sup.expect_each("worker_exit", "worker")["worker"]
            announced.append(time.perf_counter() - t0)
            old.close()
            del sup.workers[old.id]
            sup.workers[info["worker"]].call("add", {"a": 1, "b": 2})
            answered.append(time.perf_counter() - t0)
    finally:
        sup.close()
    return announced, answered


def bare_start(argv: list[str], rounds: int) -> list[float]:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        subprocess.run(argv, check=True)
        times.append(time.perf_counter() - t0)
    return times


def fmt(values: list[float]) -> str:
    ms = sorted(v * 1000 for v in values)
    return f"median {statistics.median(ms):7.2f} ms   p90 {ms[int(len(ms) * 0.9) - 1]:7.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=30)
    rounds = parser.parse_args().rounds
    with tempfile.TemporaryDirectory() as tmp:
        py = write_project(Path(tmp) / "py", PYTHON)
        js = write_project(Path(tmp) / "js", NODE_CJS)
        spawn = ("--mode", "spawn")
        rows = [
            ("python fork", "python", py, ()),
            ("python spawn, no spare", "python", py, (*spawn, "--spares", "0")),
            ("python spawn + spare", "python", py, spawn),
        ]
        if shutil.which("node"):
            rows.append(("node, no spare", "javascript", js, ("--spares", "0")))
            rows.append(("node + spare", "javascript", js, ()))
        for name, language, source, extra in rows:
            announced, answered = respawn_times(language, source, rounds, *extra)
            print(f"{name:23} announced: {fmt(announced)} | first answer: {fmt(answered)}")
    bare = bare_start([sys.executable, "-I", "-c", "pass"], rounds)
    print(f"{'bare python':23} `python -I -c pass`: {fmt(bare)}")
    if shutil.which("node"):
        print(f"{'bare node':23} `node -e 0`: {fmt(bare_start(['node', '-e', '0'], rounds))}")


if __name__ == "__main__":
    main()

"""Start-to-exit time of `python3 -I -S -c pass`: plain, unshare, bwrap, and our sandbox.

All four are measured in the same run, interleaved round by round so drift hits
them alike; the table gives medians and ratios. Target: ours <= 2 x bwrap.
Run as root:  .venv/bin/python bench/sandbox_start.py [--runs 40] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sandbox import CgroupRoot, Sandbox, SandboxSpec, start

PY = "/usr/bin/python3"  # Debian's: the same binary for every case (pyenv shims are scripts)
CMD = [PY, "-I", "-S", "-c", "pass"]
ENV = {"PATH": "/usr/bin:/bin"}


def _bwrap_args() -> list[str]:
    args = ["bwrap", "--unshare-all", "--die-with-parent", "--ro-bind", "/usr", "/usr"]
    for top in ("/bin", "/sbin", "/lib", "/lib64"):
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    args += ["--ro-bind", "/etc/ld.so.cache", "/etc/ld.so.cache"]
    return [*args, "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", *CMD]


def _spawn(argv: list[str]) -> Callable[[], None]:
    def run() -> None:
        subprocess.run(argv, check=True, env=ENV)

    return run


def _ours(root: CgroupRoot) -> Callable[[], None]:
    count = iter(range(10**9))

    def run() -> None:
        spec = SandboxSpec(
            argv=tuple(CMD),
            env=ENV,
            name=f"bench-{next(count)}",
            cpu_vcpus=0.7,
            memory_bytes=int(1.1 * 2**30),
            pids_max=128,
            seccomp=True,
        )
        box = start(spec, root)
        ex = box.wait_blocking()
        assert ex is not None and ex.code == 0, ex
        _pending.append(box)

    return run


_pending: list[Sandbox] = []  # cleaned up between timed runs


def measure(cases: dict[str, Callable[[], None]], runs: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in cases}
    for i in range(runs + 3):
        for name, fn in cases.items():
            t0 = time.perf_counter()
            fn()
            elapsed = (time.perf_counter() - t0) * 1000
            for box in _pending:  # cgroup removal happens after exit: not part of start-to-exit
                box.cleanup()
            _pending.clear()
            if i >= 3:  # warm-up rounds
                times[name].append(elapsed)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument(
        "--json", default="bench/results/sandbox_start.json", help="where to write the numbers"
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("run as root (namespaces and cgroups)", file=sys.stderr)
        return 2
    root = CgroupRoot.create("scriptd-bench")
    cases = {
        "plain": _spawn(CMD),
        "unshare -mpiunC -f": _spawn(["unshare", "-mpiunCf", *CMD]),
        "bwrap --unshare-all": _spawn(_bwrap_args()),
        "scriptd sandbox (cgroup+seccomp)": _ours(root),
    }
    try:
        times = measure(cases, args.runs)
    finally:
        root.cleanup()
    med = {name: statistics.median(t) for name, t in times.items()}
    base, bwrap = med["plain"], med["bwrap --unshare-all"]
    print(f"python3 -I -S -c pass, start to exit, {args.runs} runs each ({PY})")
    print(f"{'case':34} {'median ms':>10} {'p90 ms':>8} {'x plain':>8} {'x bwrap':>8}")
    for name, t in times.items():
        p90 = statistics.quantiles(t, n=10)[-1]
        ratios = f"{med[name] / base:8.2f} {med[name] / bwrap:8.2f}"
        print(f"{name:34} {med[name]:10.2f} {p90:8.2f} {ratios}")
    ratio = med["scriptd sandbox (cgroup+seccomp)"] / bwrap
    print(f"target ours <= 2.00 x bwrap: {ratio:.2f} -> {'met' if ratio <= 2 else 'MISSED'}")
    if args.json:
        os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
        with open(args.json, "w") as f:
            json.dump({"runs": args.runs, "median_ms": med, "times_ms": times}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

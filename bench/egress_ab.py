"""The egress proxy of a base commit beside this tree's, on one upstream server: short
rate bursts alternate between the two proxies, and each burst's proxy CPU time per
request is paired with the other's. On a loaded host the paired ratio (this tree /
base) moves far less than either figure or than bench/egress.py's rate ratios.

    .venv/bin/python bench/egress_ab.py BASE_COMMIT [--bursts 10] [--seconds 1.0]

BASE_COMMIT may be a directory holding a tree instead (one with compiled modules, say,
which `git archive` would leave out): its proxy is run from there as it is.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from egress import Setup, child, openers, rate  # type: ignore[import-not-found]

HERE = Path(__file__).resolve().parent
MODES = ("proxy http", "proxy https intercepted")
Bursts = dict[tuple[str, str], list[tuple[float, float]]]  # (tree, mode) -> (us, req/s)


def export(commit: str, into: Path) -> Path:
    if Path(commit, "bench", "egress.py").is_file():  # a tree already on disk
        return Path(commit).resolve()
    into.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(HERE.parent), "archive", commit], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def start_proxy(tree: Path, directory: Path, ports: dict[str, int]) -> subprocess.Popen[str]:
    argv = [str(tree / "bench" / "egress.py"), "--serve-proxy", str(directory)]
    argv += [str(ports["http"]), str(ports["https"])]
    proxy = subprocess.Popen(
        [sys.executable, *argv], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proxy.stdout is not None and proxy.stdout.readline().strip() == "ready"
    return proxy


async def alternate(setups: dict[str, Setup], bursts: int, seconds: float) -> Bursts:
    results: Bursts = {(name, mode): [] for name in setups for mode in MODES}
    for i in range(bursts):
        for name in ("base", "head") if i % 2 == 0 else ("head", "base"):
            setup = setups[name]
            for mode in MODES:
                before = setup.cpu_seconds()[1]
                done, elapsed = await rate(openers(setup)[mode], 8, seconds)
                used = setup.cpu_seconds()[1] - before
                results[(name, mode)].append((used / done * 1e6, done / elapsed))
    return results


def report(results: Bursts) -> None:
    for mode in MODES:
        for name in ("base", "head"):
            cpu = [us for us, _ in results[(name, mode)]]
            rates = [r for _, r in results[(name, mode)]]
            print(
                f"{mode:24} {name}: proxy us/request median {statistics.median(cpu):6.1f}"
                f" (min {min(cpu):6.1f}), req/s median {statistics.median(rates):6.0f}"
            )
        pairs = zip(results[("base", mode)], results[("head", mode)], strict=True)
        ratio = statistics.median(head[0] / base[0] for base, head in pairs)
        print(f"{mode:24} head/base CPU per request, paired median {ratio:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base", help="the commit (or tree directory) to compare this tree with")
    parser.add_argument("--bursts", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=1.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="egress-ab-") as tmp:
        trees = {"base": export(args.base, Path(tmp, "tree")), "head": HERE.parent}
        with child("--serve-upstream", tmp) as upstream:
            ports = json.loads(upstream.stdout.readline())
            setups, proxies = {}, []
            for name, tree in trees.items():
                directory = Path(tmp, name)
                directory.mkdir()
                shutil.copy(Path(tmp, "test-ca.pem"), directory / "test-ca.pem")
                proxy = start_proxy(tree, directory, ports)
                proxies.append(proxy)
                setups[name] = Setup(
                    directory, ports["http"], ports["https"], upstream.pid, proxy.pid
                )
            print("load average before", os.getloadavg())
            results = asyncio.run(alternate(setups, args.bursts, args.seconds))
            print("load average after", os.getloadavg())
            for proxy in proxies:
                assert proxy.stdin is not None
                proxy.stdin.close()
                proxy.wait(10)
    report(results)


if __name__ == "__main__":
    main()

"""Two revisions of the daemon side by side in one run: the same no-op call through
each, rounds interleaved, so a change to the call path is measured against its
parent on the same (shared, busy) machine at the same time.

Each revision is exported from git (`git archive`) into a temp dir and its daemon runs
from there on this venv's interpreter (`python -m daemon.main` with that dir as cwd),
with a real sandbox, a deployed no-op Python function and a cached key, as
bench/invoke.py calls it. A round runs wrk at --connections on each daemon in turn
(the order alternates per round), then at 1 connection for the latency. Printed per
revision: req/s, the daemon process's CPU per call (/proc), its replicas' CPU per
call (their cgroup), p50/p99 at 1 connection; medians of the rounds, and the ratio of
B to A per round (median). Metrics are on (as the daemon's default config has them).
--concurrency N (N > 1) calls bench/invoke.py's (f) function instead: an async no-op at
concurrency N on one replica of the profile.

    .venv/bin/python -m bench.invoke_ab [--a main] [--b WORKTREE] [--rounds 5]
        [--seconds 5] [--connections 32] [--concurrency 8]

--b WORKTREE (the default) runs this checkout as it is on disk, uncommitted changes
included; an absolute path (either side) runs the tree in that directory as it is.
--python-a / --python-b run a side's daemon on another interpreter (one whose
environment has the project's dependencies installed), to compare interpreters
on the same code: `--a WORKTREE --b WORKTREE --python-b /path/to/venv/bin/python`.
Run as root (sandboxes).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.invoke import BODY, cpu_seconds, deploy_noop, replicas_cpu_seconds
from bench.invoke_concurrency import ASYNC_NOOP
from bench.loadgen import run_load
from tests.helpers import REPO, AdminClient, DaemonProcess, free_port, make_zip

WORKTREE = "WORKTREE"


@dataclass
class Side:
    label: str
    daemon: DaemonProcess
    url: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    rps: list[float] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)
    replica_cpu_us: list[float] = field(default_factory=list)
    p50_ms: list[float] = field(default_factory=list)
    p99_ms: list[float] = field(default_factory=list)


@contextlib.contextmanager
def exported(rev: str) -> Iterator[Path]:
    """The tree of `rev` (this checkout as it is for WORKTREE, a directory for a path)."""
    if rev == WORKTREE:
        yield REPO
        return
    if Path(rev).is_absolute():  # a tree on disk, e.g. bench/mypyc_call_path.py --keep
        yield Path(rev)
        return
    with tempfile.TemporaryDirectory(prefix="scriptd-ab-tree-") as tmp:
        archive = subprocess.run(["git", "-C", str(REPO), "archive", rev], check=True,
                                 capture_output=True).stdout  # fmt: skip
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        yield Path(tmp)


def deploy(admin: AdminClient, profile: str, concurrency: int) -> str:
    """The sync no-op of (b) (concurrency 1), or the async no-op of (f) at `concurrency`
    on one replica; returns an API key for it."""
    if concurrency == 1:
        return deploy_noop(admin, profile)
    archive = admin.upload(make_zip({"main.py": ASYNC_NOOP}))
    admin.create("bench", archive_id=archive, profile=profile, concurrency=concurrency,
                 min_replicas=1, max_replicas=1, deploy=True)  # fmt: skip
    script = admin.wait_status("bench")
    if script["status"] != "Deployed":
        raise RuntimeError(f"the async no-op script did not deploy: {script}")
    return str(admin.call("POST", "/v1/scripts/bench/keys", {}, expect=201)["key"])


def start(label: str, tree: Path, root: Path, profile: str, concurrency: int, python: str) -> Side:
    metrics = {"metrics": {"listen": f"127.0.0.1:{free_port()}"}}
    daemon = DaemonProcess(root, metrics, root / "cache")
    daemon.repo = tree
    daemon.python = python
    daemon.start()
    side = Side(label, daemon)
    key = deploy(daemon.client(), profile, concurrency)
    side.url = f"http://127.0.0.1:{daemon.port}/v1/scripts/bench/functions/noop"
    side.headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    check = run_load(side.url, BODY, side.headers, 1, 1)  # warm-up; caches the key
    if check.errors or not check.requests:
        raise RuntimeError(f"{label}: calls fail: {check}\n{daemon.log()[-3000:]}")
    return side


def one_round(side: Side, connections: int, seconds: int) -> None:
    proc = side.daemon.proc
    assert proc is not None
    before, rep_before = cpu_seconds(proc.pid), replicas_cpu_seconds(side.daemon)
    load = run_load(side.url, BODY, side.headers, connections, seconds)
    calls = max(1, load.requests)
    side.cpu_us.append((cpu_seconds(proc.pid) - before) / calls * 1e6)
    side.replica_cpu_us.append((replicas_cpu_seconds(side.daemon) - rep_before) / calls * 1e6)
    side.rps.append(load.rps)
    one = run_load(side.url, BODY, side.headers, 1, max(1, seconds // 2))
    side.p50_ms.append(one.p50_ms)
    side.p99_ms.append(one.p99_ms)


def summary(a: Side, b: Side) -> dict[str, Any]:
    med = statistics.median
    out: dict[str, Any] = {}
    for name in ("rps", "cpu_us", "replica_cpu_us", "p50_ms", "p99_ms"):
        va, vb = getattr(a, name), getattr(b, name)
        ratios = [y / x for x, y in zip(va, vb, strict=True) if x]
        out[name] = {a.label: med(va), b.label: med(vb),
                     "b_over_a": med(ratios) if ratios else None,
                     "rounds": {a.label: va, b.label: vb}}  # fmt: skip
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--a", default="main", help="git revision A (the baseline)")
    parser.add_argument("--b", default=WORKTREE, help="git revision B, or WORKTREE")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--profile", default="1vcpu-2gb")
    parser.add_argument("--concurrency", type=int, default=1,
                        help="> 1: an async no-op at this concurrency, as row (f)")  # fmt: skip
    parser.add_argument("--python-a", default=sys.executable, help="A's interpreter")
    parser.add_argument("--python-b", default=sys.executable, help="B's interpreter")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("run as root: replicas run in real sandboxes", file=sys.stderr)
        return 2
    load_before = os.getloadavg()
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="scriptd-ab-")))
        sides = []
        for label, rev, python in (("A", args.a, args.python_a), ("B", args.b, args.python_b)):
            tree = stack.enter_context(exported(rev))
            (tmp / label).mkdir()
            side = start(f"{label}={rev}", tree, tmp / label, args.profile, args.concurrency,
                         python)  # fmt: skip
            stack.callback(side.daemon.stop)
            sides.append(side)
        for i in range(args.rounds):
            for side in sides if i % 2 == 0 else reversed(sides):
                one_round(side, args.connections, args.seconds)
        result = summary(*sides)
    result["loadavg"] = {"start": load_before, "end": os.getloadavg()}
    result["args"] = {k: str(v) for k, v in vars(args).items()}
    function = "sync no-op" if args.concurrency == 1 else f"async no-op conc {args.concurrency}"
    print(f"A/B ({function}, {args.profile}), {args.rounds} rounds of {args.seconds} s at "
          f"{args.connections} connections, "
          f"load average at start {load_before[0]:.2f}, "
          f"at end {os.getloadavg()[0]:.2f}")  # fmt: skip
    a, b = (s.label for s in sides)
    print(f"{'median':22} {a[:18]:>18} {b[:18]:>18} {'B/A':>6}")
    for name, row in result.items():
        if name in ("loadavg", "args"):
            continue
        ratio = row["b_over_a"]
        print(f"{name:22} {row[a]:18.2f} {row[b]:18.2f} {ratio if ratio else float('nan'):6.3f}")
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A new replica's first answer, step by step: each cold-path change against the one
before it, interleaved round by round with bwrap in one run (bench/invoke.py's row (c)).

Variants (each adds one change to the one above it):
  fork launcher        the start as it was: a launcher forked from this process clones pid 1
  + zygote             pid 1 cloned from the zygote, network namespace made at clone
  + namespace ahead    the zygote makes the next network namespace ahead
  + moves kept warm    the kernel's cgroup attach lock kept warm while the worker is
                       expected (sandbox/move_warmer.py)
  + lean zygote        the zygote without the package's __init__, site and pyseccomp
                       (the rows above use the zygote as it was: all of them, ~23 MB)
  + warm move inline   a worker's move made on the event loop when the lock is warm, not
                       in a thread (all: a cold start today, replicas.spare_sandbox off)
  + spare parked ahead the pool's spare sandbox parked before the clock starts, released
                       by the start (serving/spare.py: a scale-up or replacement today)
The "hello" column is pool.start to the supervisor's hello frame. A second table
times sandbox.start alone (python3 -I -S -c pass, to its exec) in each variant, from
this process with the daemon's modules imported (its size matters: it is what a
forked launcher copies), and the release of a parked sandbox (go message to exec).
A third table: a worker's respawn after a timeout kill (bench/invoke.py's row (d)) with
the move into its slot's memory cgroup cold and kept warm, alternating round by round.
Run as root:  .venv/bin/python -m bench.cold_start [--runs 30] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import uvloop

import sandbox
import sandbox.launcher as sandbox_launcher
from bench.invoke_replica import (
    POOL,
    RESPAWN_TIMEOUT_S,
    _one_replica,
    _Stamps,
    _target,
    bwrap_times,
    make_venv,
)
from daemon.serving.call_errors import Timeout
from daemon.serving.dispatcher import Dispatcher, DispatchSettings
from daemon.serving.launcher import LaunchSettings, SandboxLauncher
from daemon.serving.pool import Pool
from daemon.serving.workspace_image import release
from sandbox import zygote
from sandbox.handle import Sandbox

RESULTS = Path(__file__).resolve().parent / "results" / "cold_start.json"
# The zygote as it was before it went lean: the whole package, site and pyseccomp.
ROOT = str(Path(__file__).resolve().parents[1])
FAT = (
    ("-I", "-c"),
    f"import sys; sys.path.insert(0, {ROOT!r}); import pyseccomp, sandbox; "
    "from sandbox.zygote import serve; serve()",
)
NO_NET = "import sandbox.zygote as z; z._NetworkAhead.prepare = lambda self: None; serve()"
FAT_NO_NET_AHEAD = (FAT[0], FAT[1].replace("serve()", NO_NET))
LEAN = (("-I", "-S", "-c"), zygote._BOOT)


LAST = "+ warm move inline"  # every change: a cold start today
_EXPECT_MOVES = Sandbox.expect_moves
_MOVE_IS_QUICK = Sandbox.move_is_quick


def _no_warmth(self: Sandbox, count: int, seconds: float) -> None:
    """Moves as they were: each one waits for the kernel's RCU grace period."""


def _in_a_thread(self: Sandbox) -> bool:
    """Every move made in a thread, as before the warm ones were made on the loop."""
    return False


def _zygote(flags_and_boot: tuple[tuple[str, ...], str]) -> zygote.Zygote:
    """zygote._spawn with other interpreter flags and boot code (from the main thread,
    which outlives every sandbox)."""
    flags, boot = flags_and_boot
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with theirs:
        process = subprocess.Popen(
            [sys.executable, *flags, boot, str(theirs.fileno()), str(os.getpid())],
            pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL,
            env={"PATH": "/usr/bin:/bin"}, cwd="/",
        )  # fmt: skip
    return zygote.Zygote(process, ours)


class Variants:
    """Switches between the variants by swapping the zygote the launcher looks up."""

    def __init__(self) -> None:
        self.fat_no_net = _zygote(FAT_NO_NET_AHEAD)
        self.fat = _zygote(FAT)
        self.lean = _zygote(LEAN)

    def table(self) -> dict[str, Callable[[], None]]:
        return {
            "fork launcher": lambda: self._use(None),
            "+ zygote": lambda: self._use(self.fat_no_net),
            "+ namespace ahead": lambda: self._use(self.fat),
            "+ moves kept warm": lambda: self._use(self.fat, warm=True),
            "+ lean zygote": lambda: self._use(self.lean, warm=True),
            "+ warm move inline": lambda: self._use(self.lean, warm=True, inline=True),
        }

    def _use(self, chosen: zygote.Zygote | None, warm: bool = False, inline: bool = False) -> None:
        sandbox_launcher._zygote.get = lambda: chosen  # type: ignore[attr-defined]
        Sandbox.expect_moves = _EXPECT_MOVES if warm else _no_warmth  # type: ignore[method-assign]
        Sandbox.move_is_quick = _MOVE_IS_QUICK if inline else _in_a_thread  # type: ignore[method-assign]

    def stop(self) -> None:
        Sandbox.expect_moves = _EXPECT_MOVES  # type: ignore[method-assign]
        Sandbox.move_is_quick = _MOVE_IS_QUICK  # type: ignore[method-assign]
        for z in (self.fat_no_net, self.fat, self.lean):
            z.stop()


async def measure(runs: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="scriptd-cold-") as tmp:
        root = Path(tmp)
        target = _target(root, make_venv(root))
        cgroups = sandbox.CgroupRoot.create("scriptd-bench-cold")
        launcher = SandboxLauncher(target, replace(LaunchSettings(), uid_base=300_000), cgroups)
        variants = Variants()
        table = variants.table()
        spare_row = "+ spare parked ahead"
        first: dict[str, list[float]] = {name: [] for name in [*table, spare_row]}
        hello: dict[str, list[float]] = {name: [] for name in [*table, spare_row]}
        bwrap: list[float] = []
        try:
            with _Stamps() as stamps:
                for i in range(runs + 2):  # two warm-up rounds
                    bw = bwrap_times(1)[0]
                    for name, switch in [*table.items(), (spare_row, table[LAST])]:
                        switch()
                        spare = name == spare_row
                        elapsed, to_hello = await _one_replica(launcher, stamps, spare)
                        if i >= 2:
                            first[name].append(elapsed)
                            hello[name].append(to_hello)
                    if i >= 2:
                        bwrap.append(bw)
        finally:
            variants.stop()
            cgroups.cleanup()
            release(target.workspace_dir)
    return {"first_call_ms": first, "hello_ms": hello, "bwrap_ms": bwrap}


async def respawns(runs: int) -> dict[str, list[float]]:
    """Timeout -> next call answered (a worker killed and replaced in its slot), with
    the move into the slot's memory cgroup cold and kept warm, alternating each round."""
    with tempfile.TemporaryDirectory(prefix="scriptd-cold-") as tmp:
        root = Path(tmp)
        target = _target(root, make_venv(root))
        cgroups = sandbox.CgroupRoot.create("scriptd-bench-respawn")
        launcher = SandboxLauncher(target, replace(LaunchSettings(), uid_base=300_000), cgroups)
        dispatcher = Dispatcher("bench", RESPAWN_TIMEOUT_S, DispatchSettings())
        pool = Pool("bench-respawn", launcher, POOL, dispatcher)
        variants = {"moves cold": _no_warmth, "moves kept warm": _EXPECT_MOVES}
        times: dict[str, list[float]] = {name: [] for name in variants}
        try:
            await pool.start(1)
            pool.activate()
            await dispatcher.call("noop", {})
            for i in range(runs + 1):  # a warm-up round
                for name, expect_moves in variants.items():
                    Sandbox.expect_moves = expect_moves  # type: ignore[method-assign]
                    await asyncio.sleep(0.05)
                    with contextlib.suppress(Timeout):
                        await dispatcher.call("spin", {})
                    t0 = time.perf_counter()
                    with contextlib.suppress(Timeout):  # the slot down for the whole timeout
                        await dispatcher.call("noop", {})
                    if i >= 1:
                        times[name].append((time.perf_counter() - t0) * 1000)
        finally:
            Sandbox.expect_moves = _EXPECT_MOVES  # type: ignore[method-assign]
            await pool.stop(drain_timeout=1)
            cgroups.cleanup()
            release(target.workspace_dir)
    return times


def sandbox_starts(runs: int) -> dict[str, list[float]]:
    """sandbox.start alone, per variant, interleaved: ms to the payload's exec."""
    import daemon.main  # noqa: F401  (the daemon's size)

    variants = Variants()
    table = variants.table()
    for same in ("+ moves kept warm", "+ warm move inline"):  # sandbox.start as their parent
        del table[same]
    root = sandbox.CgroupRoot.create("scriptd-bench-cold-start")
    released = "release of a parked one"  # with the lean zygote: sandbox/parked.py
    times: dict[str, list[float]] = {name: [] for name in [*table, released]}
    try:
        rows = [*table.items(), (released, table["+ lean zygote"])]
        for i in range(runs + 3):
            for n, (name, switch) in enumerate(rows):
                switch()
                spec = sandbox.SandboxSpec(
                    argv=("/usr/bin/python3", "-I", "-S", "-c", "pass"),
                    env={"PATH": "/usr/bin"}, name=f"cold-{i}-{n}", cpu_vcpus=0.7,
                    memory_bytes=1 << 30, pids_max=128,
                )  # fmt: skip
                parked = sandbox.park(spec, root) if name == released else None
                t0 = time.perf_counter()
                box = parked.release(spec.env) if parked else sandbox.start(spec, root)
                if i >= 3:
                    times[name].append((time.perf_counter() - t0) * 1000)
                box.wait_blocking()
                box.cleanup()
    finally:
        variants.stop()
        root.cleanup()
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--json", type=Path, default=RESULTS)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("run as root: replicas run in real sandboxes", file=sys.stderr)
        return 2
    load_before = os.getloadavg()
    t0 = time.monotonic()
    out = uvloop.run(measure(args.runs))
    out |= {"runs": args.runs, "loadavg_start": load_before, "loadavg_end": os.getloadavg()}
    med = statistics.median
    bw = med(out["bwrap_ms"])
    print(f"new replica -> first answer, medians of {args.runs} interleaved rounds "
          f"({time.monotonic() - t0:.0f} s; load avg {load_before[0]:.1f} at start, "
          f"{out['loadavg_end'][0]:.1f} at end)")  # fmt: skip
    print(f"{'variant':28} {'first ms':>9} {'hello ms':>9} {'x bwrap':>8}")
    for name, times in out["first_call_ms"].items():
        print(
            f"{name:28} {med(times):9.2f} {med(out['hello_ms'][name]):9.2f} {med(times) / bw:8.2f}"
        )
    print(f"{'bwrap python3 -I -S -c pass':28} {bw:9.2f} {'':9} {1:8.2f}")
    out["respawn_ms"] = uvloop.run(respawns(args.runs))
    print(f"respawn: timeout -> next answer, {args.runs} alternating rounds (over "
          f"{RESPAWN_TIMEOUT_S * 1000:.0f} ms: the next call timed out too)")  # fmt: skip
    print(f"{'variant':28} {'median':>9} {'p90':>9} {'max':>9}")
    for name, times in out["respawn_ms"].items():
        p90 = statistics.quantiles(times, n=10)[-1]
        print(f"{name:28} {med(times):9.2f} {p90:9.2f} {max(times):9.2f}")
    out["sandbox_start_ms"] = sandbox_starts(args.runs)
    rss = int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGESIZE") >> 20
    print(f"sandbox.start alone, medians of {args.runs} (this process: {rss} MiB resident)")
    for name, times in out["sandbox_start_ms"].items():
        print(f"{name:28} {med(times):9.2f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

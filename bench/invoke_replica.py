"""bench/invoke.py's rows (c) and (d): a new replica's first answer and a worker's
respawn after a timeout, measured on the daemon's own pieces (SandboxLauncher, Pool,
Dispatcher on uvloop) with a real sandbox, next to bwrap starting a bare python.

(c) new replica: `Pool.start(1)` (sandbox.start in a thread, supervisor start-up, hello,
    the worker's socket connected) then the first `Dispatcher.call` answered; the clock
    runs from the call to pool.start to that answer. Two rows, interleaved round by
    round with bwrap: "cold" with no spare sandbox (replicas.spare_sandbox off: the
    whole launch on the path), and "from a parked spare", where the pool's spare was
    parked before the clock starts (serving/spare.py) and the start releases it (the
    environment sent, pid 1's exec), as a scale-up or a replacement does; the next
    spare is parked in the background 0.25 s after, as in the daemon.
(d) respawn: a call to a function that spins past a short execution timeout ends with
    Timeout (the gateway's 504); the clock runs from that exception to the next call
    answered, which needs the fresh worker the supervisor forks in the slot (K = 1).
Both also split the time at the supervisor's messages (hello, worker) to show where it
goes. Run as root (namespaces and cgroups); imported by bench/invoke.py.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import sandbox
from daemon.config.profiles import DEFAULT_PROFILES
from daemon.serving.call_errors import Timeout
from daemon.serving.dispatcher import Dispatcher, DispatchSettings
from daemon.serving.launcher import LaunchSettings, SandboxLauncher
from daemon.serving.pool import Pool, PoolSettings
from daemon.serving.replica import Replica
from daemon.serving.target import RunTarget
from daemon.serving.workspace_image import release

__all__ = ["BWRAP_ARGV", "ReplicaFigures", "bwrap_times", "make_venv", "measure_replicas"]

HOST_PYTHON = "/usr/bin/python3"  # the Debian interpreter: what the daemon picks by default
BWRAP_ARGV = ["bwrap", "--unshare-all", "--ro-bind", "/", "/", "--dev", "/dev",
              "--proc", "/proc", HOST_PYTHON, "-I", "-S", "-c", "pass"]  # fmt: skip
MAIN_PY = "def noop():\n    return None\n\n\ndef spin():\n    while True:\n        pass\n"
RESPAWN_TIMEOUT_S = 0.3  # the execution timeout of the spinning call in (d)
POOL = PoolSettings(start_timeout_s=20, backoff_s=0.05, kill_grace_s=3, tick_s=0.1)
COLD_POOL = replace(POOL, spare_sandbox=False)  # every start launches its sandbox
PARK_TIMEOUT_S = 20.0


@dataclass
class ReplicaFigures:
    first_call_ms: list[float]  # (c): pool.start -> first call answered (cold: no spare)
    hello_ms: list[float]  # (c) split: pool.start -> hello frame read by the daemon
    spare_first_call_ms: list[float]  # (c) the same, the start released the parked spare
    spare_hello_ms: list[float]
    respawn_ms: list[float]  # (d): Timeout raised -> next call answered
    respawn_announce_ms: list[float]  # (d) split: kill_worker sent -> new "worker" frame


def make_venv(root: Path) -> Path:
    """A relocatable venv on the host python, as the builder makes them."""
    uv = Path(sys.executable).parent / "uv"
    venv = root / "venv"
    subprocess.run([str(uv), "venv", "--quiet", "--relocatable", "--python",
                    os.path.realpath(HOST_PYTHON), str(venv)], check=True)  # fmt: skip
    return venv


def _target(root: Path, venv: Path) -> RunTarget:
    src = root / "src"
    src.mkdir(exist_ok=True)
    (src / "main.py").write_text(MAIN_PY)
    return RunTarget(
        script_id=4343, script="bench", version=1, language="python",
        runtime_version="3.11", runtime_path=os.path.realpath(HOST_PYTHON),
        source_dir=src, env_dir=venv, workspace_dir=root / "workspace", env={},
        timeout_s=30, functions=(), min_replicas=1, max_replicas=1, cpu_target=75,
        profile=DEFAULT_PROFILES[0],
    )  # fmt: skip


class _Stamps:
    """perf_counter times of what the daemon's replicas see: the first hello and worker
    frames, the latest worker frame and the latest kill_worker sent."""

    def __init__(self) -> None:
        self.marks: dict[str, float] = {}
        self._saved: tuple[Any, Any] | None = None

    def __enter__(self) -> _Stamps:
        on_control, kill_worker = Replica._on_control, Replica.kill_worker
        marks = self.marks

        def timed_on_control(replica: Replica, frame: dict[str, Any]) -> None:
            kind = frame.get("t")
            now = time.perf_counter()
            if kind in ("hello", "worker"):
                marks.setdefault(kind, now)
                marks[f"last_{kind}"] = now
            on_control(replica, frame)

        def timed_kill_worker(replica: Replica, worker: Any) -> None:
            marks["kill_sent"] = time.perf_counter()
            kill_worker(replica, worker)

        self._saved = on_control, kill_worker
        Replica._on_control = timed_on_control  # type: ignore[method-assign, assignment]
        Replica.kill_worker = timed_kill_worker  # type: ignore[method-assign, assignment]
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._saved is not None
        Replica._on_control, Replica.kill_worker = self._saved  # type: ignore[method-assign]


async def _one_replica(
    launcher: SandboxLauncher, stamps: _Stamps, spare: bool = False
) -> tuple[float, float]:
    """(pool.start -> first answer, -> hello) in ms; with `spare`, the pool's spare is
    parked before the clock starts and the start takes it."""
    dispatcher = Dispatcher("bench", 30, DispatchSettings())
    pool = Pool(f"bench-{time.monotonic_ns()}", launcher, POOL if spare else COLD_POOL,
                dispatcher)  # fmt: skip
    if spare:
        await _park(pool)
    stamps.marks.clear()
    t0 = time.perf_counter()
    await pool.start(1)
    pool.activate()
    await dispatcher.call("noop", {})
    elapsed = time.perf_counter() - t0
    hello = stamps.marks["hello"] - t0
    await pool.stop(drain_timeout=1)
    return elapsed * 1000, hello * 1000


async def _park(pool: Pool) -> None:
    pool.spare.refill(0)
    deadline = time.monotonic() + PARK_TIMEOUT_S
    while not pool.spare.parked:
        if time.monotonic() > deadline:
            raise RuntimeError("the spare sandbox was not parked in time")
        await asyncio.sleep(0.005)
    await asyncio.sleep(0.05)  # the parking thread's and pid 1's last steps settle


async def _respawns(launcher: SandboxLauncher, stamps: _Stamps, runs: int) -> tuple[list, list]:
    """(Timeout -> next answer, kill_worker sent -> new worker frame) per round, in ms."""
    dispatcher = Dispatcher("bench", RESPAWN_TIMEOUT_S, DispatchSettings())
    pool = Pool("bench-respawn", launcher, POOL, dispatcher)
    await pool.start(1)
    pool.activate()
    await dispatcher.call("noop", {})
    total, announce = [], []
    try:
        for _ in range(runs + 2):  # two warm-up rounds
            await asyncio.sleep(0.05)
            try:
                await dispatcher.call("spin", {})
            except Timeout:
                t0 = time.perf_counter()
            else:
                raise RuntimeError("spin() returned")
            await dispatcher.call("noop", {})
            total.append((time.perf_counter() - t0) * 1000)
            marks = stamps.marks
            announce.append((marks["last_worker"] - marks["kill_sent"]) * 1000)
    finally:
        await pool.stop(drain_timeout=1)
    return total[2:], announce[2:]


def bwrap_times(runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(BWRAP_ARGV, check=True)
        times.append((time.perf_counter() - t0) * 1000)
    return times


async def measure_replicas(runs: int, work: Path | None = None) -> tuple[ReplicaFigures, list]:
    """(c) and (d) with `runs` samples each, and the bwrap baseline interleaved with (c)."""
    with tempfile.TemporaryDirectory(prefix="scriptd-bench-") as tmp:
        root = Path(work or tmp)
        venv = make_venv(root)
        target = _target(root, venv)
        cgroups = sandbox.CgroupRoot.create("scriptd-bench")
        settings = replace(LaunchSettings(), uid_base=300_000)
        launcher = SandboxLauncher(target, settings, cgroups)
        first, hello, bwrap = [], [], []
        spare_first, spare_hello = [], []
        try:
            with _Stamps() as stamps:
                for i in range(runs + 2):  # two warm-up rounds: page cache, bytecode
                    bw = bwrap_times(1)[0]
                    # cold and spare alternate which goes first, round by round
                    order = (False, True) if i % 2 else (True, False)
                    for spare in order:
                        elapsed, to_hello = await _one_replica(launcher, stamps, spare)
                        if i >= 2:
                            (spare_first if spare else first).append(elapsed)
                            (spare_hello if spare else hello).append(to_hello)
                    if i >= 2:
                        bwrap.append(bw)
                respawn, announce = await _respawns(launcher, stamps, runs)
        finally:
            cgroups.cleanup()
            release(target.workspace_dir)  # its image is mounted at the first start
    figures = ReplicaFigures(first, hello, spare_first, spare_hello, respawn, announce)
    return figures, bwrap


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


if __name__ == "__main__":  # quick look: python -m bench.invoke_replica [runs]
    import uvloop

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    figs, bw = uvloop.run(measure_replicas(n))
    print(f"bwrap python -I -S -c pass  median {median(bw):7.2f} ms")
    print(
        f"new replica -> first answer median {median(figs.first_call_ms):7.2f} ms cold, "
        f"{median(figs.spare_first_call_ms):7.2f} ms from a parked spare"
        f"  (to hello {median(figs.hello_ms):.2f} / {median(figs.spare_hello_ms):.2f} ms)"
    )
    print(
        f"respawn: timeout -> answered median {median(figs.respawn_ms):7.2f} ms"
        f"  (kill_worker -> worker frame {median(figs.respawn_announce_ms):.2f} ms)"
    )

"""Where the daemon's CPU goes on the call path: py-spy samples the real scriptd daemon
while wrk calls a deployed no-op function (cached key) over N connections.

Prints the daemon's CPU per call (/proc), then the functions with the most samples,
by own time and including callees. Needs root (sandboxes), wrk and py-spy
(`pip install py-spy`; it is not a dependency of scriptd).

    .venv/bin/python -m bench.profile_gateway [--seconds 10] [--connections 32] [--native]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from pathlib import Path

from bench.invoke import BODY, cpu_seconds, deploy_noop
from bench.loadgen import run_load
from tests.helpers import DaemonProcess


def summarise(raw: Path, top: int) -> None:
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        frames = stack.split(";")
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    print(f"{total} samples; own time:")
    for frame, n in own.most_common(top):
        print(f"  {100 * n / total:5.1f} %  {frame[:120]}")
    print("including callees:")
    for frame, n in inclusive.most_common(top):
        print(f"  {100 * n / total:5.1f} %  {frame[:120]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--native", action="store_true",
                        help="C frames too (py-spy then pauses the daemon per sample)")  # fmt: skip
    args = parser.parse_args()
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    with tempfile.TemporaryDirectory(prefix="scriptd-profile-") as tmp:
        root = Path(tmp)
        daemon = DaemonProcess(root, {}, root / "cache")
        daemon.start()
        try:
            assert daemon.proc is not None
            pid = daemon.proc.pid
            key = deploy_noop(daemon.client(), "1vcpu-2gb")
            url = f"http://127.0.0.1:{daemon.port}/v1/scripts/bench/functions/noop"
            headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
            run_load(url, BODY, headers, 1, 1)  # warm-up; caches the key
            raw = root / "profile.txt"
            mode = ["--native"] if args.native else ["--nonblocking"]
            spy = threading.Thread(target=subprocess.run, args=([
                py_spy, "record", "-p", str(pid), "-d", str(max(1, args.seconds - 2)),
                "-f", "raw", "-o", str(raw), "-r", "250", *mode,
            ],), kwargs={"capture_output": True})  # fmt: skip
            before = cpu_seconds(pid)
            spy.start()
            result = run_load(url, BODY, headers, args.connections, args.seconds)
            spy.join()
            cpu = cpu_seconds(pid) - before
            print(f"{result.rps:.0f} calls/s at {args.connections} connections, "
                  f"{result.errors} errors; daemon CPU per call "
                  f"{cpu / max(1, result.requests) * 1e6:.1f} us (py-spy running too)")  # fmt: skip
            summarise(raw, args.top)
        finally:
            daemon.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

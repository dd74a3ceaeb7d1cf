"""How long a new workspace takes: create a sparse image, make an ext4 in it and mount
it through a loop device (daemon/serving/workspace_image.ensure_mounted), then the same
call again on the mounted workspace (what every later replica start pays), with a
plain `mkdir` beside them as the baseline. Each run uses a fresh folder; the image is
unmounted and removed after each.

Run as root:  .venv/bin/python bench/workspace_mount.py [--size-gib 1] [--runs 10]
              [--dir /var/lib/scriptd] [--json bench/results/workspace_mount.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from daemon.serving.workspace_image import ensure_mounted, unmount


def timed_ms(fn: Callable[..., object], *args: object) -> float:
    t0 = time.perf_counter()
    fn(*args)
    return (time.perf_counter() - t0) * 1000


def one_run(parent: Path, size: int) -> dict[str, float]:
    folder = Path(tempfile.mkdtemp(prefix="ws-bench-", dir=parent))
    try:
        workspace = folder / "workspace"
        new = timed_ms(ensure_mounted, workspace, size)
        again = timed_ms(ensure_mounted, workspace, size)
        unmount(workspace)
        plain = timed_ms(os.mkdir, folder / "plain")
        return {"create_and_mount_ms": new, "already_mounted_ms": again, "mkdir_ms": plain}
    finally:
        unmount(folder / "workspace")
        shutil.rmtree(folder)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size-gib", type=float, default=1.0)
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--dir", type=Path, default=Path("/var/tmp"), help="where the images go")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    if os.geteuid() != 0:
        print("workspace_mount: run as root (mount, losetup)", file=sys.stderr)
        return 1
    size = int(args.size_gib * (1 << 30))
    runs = [one_run(args.dir, size) for _ in range(args.runs)]
    print(f"{args.runs} runs, {args.size_gib:g} GiB image in {args.dir}")
    print(f"{'step':<22}{'median ms':>12}{'min ms':>10}{'max ms':>10}")
    summary = {}
    for step in ("create_and_mount_ms", "already_mounted_ms", "mkdir_ms"):
        values = [r[step] for r in runs]
        summary[step] = statistics.median(values)
        print(f"{step:<22}{statistics.median(values):>12.1f}{min(values):>10.1f}"
              f"{max(values):>10.1f}")  # fmt: skip
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"runs": runs, "median": summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`python -m sandbox run [options] -- COMMAND...`: run one command in a sandbox.

Prints how it ended (exit code, signal, timeout, out of memory) and its usage on
stderr, and exits with the command's code (128+N for signal N, 124 on timeout).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import time
from collections.abc import Callable

from .cgroups import CgroupRoot
from .handle import Exit
from .launcher import start
from .spec import Bind, SandboxError, SandboxSpec, Tmpfs

_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
DEFAULT_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8"}


def parse_size(text: str) -> int:
    """'1.1G' -> bytes (binary units K, M, G, T; a trailing B or iB is allowed)."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]?)(i?B)?\s*", text, re.IGNORECASE)
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (try 512M or 1.1G)")
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


def _bind(writable: bool) -> Callable[[str], Bind]:
    def parse(text: str) -> Bind:
        src, _, dst = text.partition(":")
        return Bind(os.path.abspath(src), dst or os.path.abspath(src), writable)

    return parse


def _tmpfs(text: str) -> Tmpfs:
    path, sep, size = text.rpartition(":")
    if not sep:
        raise argparse.ArgumentTypeError("--tmpfs takes PATH:SIZE, e.g. /scratch:16M")
    return Tmpfs(path, parse_size(size))


def _env(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError("--env takes KEY=VALUE")
    return key, value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run COMMAND in a sandbox")
    r.add_argument("--cpu", type=float, help="vCPUs, e.g. 0.7 (= 70 ms per 100 ms)")
    r.add_argument("--memory", type=parse_size, help="memory limit, e.g. 512M or 1.1G (no swap)")
    r.add_argument("--pids", type=int, default=256, help="processes+threads limit (256)")
    r.add_argument(
        "--ro",
        type=_bind(False),
        action="append",
        default=[],
        metavar="SRC[:DST]",
        help="read-only bind (repeatable)",
    )
    r.add_argument(
        "--rw",
        type=_bind(True),
        action="append",
        default=[],
        metavar="SRC[:DST]",
        help="read-write bind (repeatable)",
    )
    r.add_argument(
        "--tmpfs",
        type=_tmpfs,
        action="append",
        default=[],
        metavar="PATH:SIZE",
        help="extra tmpfs, e.g. /scratch:16M",
    )
    r.add_argument("--tmp-size", type=parse_size, default=64 * 1024**2, help="size of /tmp (64M)")
    r.add_argument(
        "--net", choices=("none", "host"), default="none", help="none: own loopback only (default)"
    )
    r.add_argument("--timeout", type=float, help="seconds before the whole tree is killed")
    r.add_argument("--cwd", default="/", help="working dir inside (/)")
    r.add_argument(
        "--env",
        type=_env,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"environment (default {' '.join(f'{k}={v}' for k, v in DEFAULT_ENV.items())})",
    )
    r.add_argument("--uid", type=int, default=65534, help="uid inside (65534)")
    r.add_argument("--gid", type=int, default=65534, help="gid inside (65534)")
    r.add_argument("--no-seccomp", action="store_true", help="skip the system call filter")
    r.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- COMMAND...")
    return p


def _describe(ex: Exit, timed_out: bool, wall: float) -> str:
    how = "timeout" if timed_out else ex.reason
    u = ex.usage
    used = (
        ""
        if u is None
        else (
            f" | cpu {u.cpu_seconds:.3f} s | memory peak {u.memory_peak_bytes / 2**20:.1f} MiB"
            f" | oom kills {u.oom_kills}"
        )
    )
    return f"sandbox: {how} | wall {wall:.3f} s{used}"


def _status(ex: Exit, timed_out: bool) -> int:
    if timed_out:
        return 124
    if ex.code is not None:
        return ex.code
    return 128 + (ex.signal or signal.SIGKILL)


def run(args: argparse.Namespace) -> int:
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        print("sandbox: no command given (put it after --)", file=sys.stderr)
        return 2
    env = dict(DEFAULT_ENV) | dict(args.env)
    spec = SandboxSpec(
        argv=tuple(cmd),
        env=env,
        name=f"cli-{os.getpid()}",
        cwd=args.cwd,
        uid=args.uid,
        gid=args.gid,
        binds=tuple(args.ro + args.rw),
        tmpfs=tuple(args.tmpfs),
        tmp_size_bytes=args.tmp_size,
        cpu_vcpus=args.cpu,
        memory_bytes=args.memory,
        pids_max=args.pids,
        network=args.net,
        seccomp=not args.no_seccomp,
        stdin=0,
        stdout=1,
        stderr=2,
    )
    # A shared root for CLI runs: never reap others' leftovers while they may be running.
    root = CgroupRoot.create("scriptd-cli", remove_leftovers=False)
    began = time.monotonic()
    try:
        box = start(spec, root)
    except BaseException:
        root.remove_if_empty()
        raise
    timed_out = False
    try:
        ex = box.wait_blocking(args.timeout)
        if ex is None:
            timed_out = True
            box.kill()
            ex = box.wait_blocking()
    except KeyboardInterrupt:
        box.kill()
        ex = box.wait_blocking()
    finally:
        box.cleanup()
        root.remove_if_empty()
    assert ex is not None
    print(_describe(ex, timed_out, time.monotonic() - began), file=sys.stderr)
    return _status(ex, timed_out)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except (SandboxError, ValueError) as e:
        print(f"sandbox: {e}", file=sys.stderr)
        return 125

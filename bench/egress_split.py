"""Where the egress proxy's CPU goes per request, by layer: `perf record --call-graph
dwarf` on the proxy of bench/egress.py while one mode runs at full rate (8 kept-alive
connections), each sample given to the innermost layer on its stack (libc's and the
interpreter's helpers count for their caller):

- the kernel, by the system call that entered it (write, read, epoll and the rest);
- OpenSSL under SSL_write (a record encrypted), under SSL_read (records decrypted,
  and the read that ends each batch with SSLWantReadError), and the rest (BIOs);
- the ssl module's C (the SSLObject and MemoryBIO methods uvloop calls);
- uvloop's SSL protocol, and the rest of uvloop (the loop, its streams);
- llhttp and httptools;
- Python: the bytecode and what it calls in the interpreter, which here is the proxy's own
  code (the relay, the request log) and the bench's calls ending every 20 ms.

Each layer's share times the proxy's CPU per request in the same window (read from
/proc, so with perf's own overhead in it) gives microseconds per request.

    .venv/bin/python bench/egress_split.py [--mode intercepted|http|tunnel]
                                           [--seconds 8] [--frequency 800]

Needs perf (linux-perf) and root.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from egress import Setup, child, openers, rate  # type: ignore[import-not-found]

MODES = {
    "intercepted": "proxy https intercepted",
    "http": "proxy http",
    "tunnel": "proxy https tunnel",
}
Frame = tuple[str, str]  # (symbol, library)
_SYSCALLS = {
    "__GI___libc_write": "kernel: write()",
    "__GI___libc_read": "kernel: read()",
    "__GI_epoll_pwait": "kernel: epoll, other",
}


def layer(frames: list[Frame]) -> str:
    """The layer of one sample: its innermost frame that says (libc's and libpython's
    helpers are passed over to their caller)."""
    symbols = [symbol for symbol, _ in frames]
    for symbol, library in frames:
        if "kernel" in library:
            entry = next((s for s in symbols if s in _SYSCALLS), "")
            return _SYSCALLS.get(entry, "kernel: epoll, other")
        if "libcrypto" in library or "libssl" in library:
            if "SSL_write_ex" in symbols:
                return "OpenSSL: SSL_write"
            if "SSL_read_ex" in symbols:
                return "OpenSSL: SSL_read"
            return "OpenSSL: BIOs, other"
        if "_ssl.cpython" in library:
            return "ssl module (C)"
        if "parser.cpython" in library:
            return "llhttp + httptools"
        if "loop.cpython" in library:
            return "uvloop: SSL protocol" if "SSLProtocol" in symbol else "uvloop: loop, streams"
        if _interpreter(library) and symbol.startswith("_PyEval_EvalFrame"):
            return "Python"
        if symbol in _SYSCALLS:
            return _SYSCALLS[symbol]
    return "other"


def _interpreter(library: str) -> bool:
    """libpython, or an interpreter linked statically (Debian's python3.11)."""
    name = library.rsplit("/", 1)[-1]
    return name.startswith(("libpython", "python3"))


def samples(data: Path) -> list[list[Frame]]:
    out = subprocess.run(
        ["perf", "script", "-i", str(data), "-F", "ip,sym,dso"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found: list[list[Frame]] = []
    current: list[Frame] = []
    for line in out.splitlines():
        if not line.strip():
            if current:
                found.append(current)
                current = []
            continue
        rest = line.strip().split(" ", 1)[1]
        cut = rest.rfind("(")
        current.append((rest[:cut].strip(), rest[cut + 1 : -1]))
    if current:
        found.append(current)
    return found


async def record(setup: Setup, mode: str, seconds: float, frequency: int, data: Path) -> float:
    """Run `mode` at full rate with perf on the proxy; the proxy's CPU per request."""
    await rate(openers(setup)[mode], 8, 0.5)  # warm: leaves minted, upstreams open
    perf = await asyncio.create_subprocess_exec(
        "perf", "record", "-q", "-F", str(frequency), "--call-graph", "dwarf,16384",
        "-p", str(setup.proxy_pid), "-o", str(data),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    await asyncio.sleep(0.5)  # perf attached
    before = setup.cpu_seconds()[1]
    done, _ = await rate(openers(setup)[mode], 8, seconds)
    used = setup.cpu_seconds()[1] - before
    perf.send_signal(2)  # SIGINT: perf writes its file and exits
    await perf.wait()
    return used / done * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=sorted(MODES), default="intercepted")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--frequency", type=int, default=800)
    args = parser.parse_args()
    if shutil.which("perf") is None:
        raise SystemExit("perf is needed (apt-get install linux-perf)")
    with tempfile.TemporaryDirectory(prefix="egress-split-") as tmp:
        with child("--serve-upstream", tmp) as upstream:
            ports = json.loads(upstream.stdout.readline())
            with child("--serve-proxy", tmp, str(ports["http"]), str(ports["https"])) as proxy:
                if proxy.stdout.readline().strip() != "ready":
                    raise SystemExit("the proxy did not start")
                setup = Setup(Path(tmp), ports["http"], ports["https"], upstream.pid, proxy.pid)
                load = os.getloadavg()[0]
                data = Path(tmp, "perf.data")
                mode = MODES[args.mode]
                per_request = asyncio.run(record(setup, mode, args.seconds, args.frequency, data))
        counts = collections.Counter(layer(frames) for frames in samples(data))
    total = sum(counts.values())
    print(f"{mode}: proxy CPU {per_request:.1f} us per request (perf running), load {load:.2f},")
    print(f"{total} samples")
    for name, count in sorted(counts.items(), key=lambda item: -item[1]):
        share = count / total
        print(f"  {name:24} {share * 100:5.1f} %  {share * per_request:6.1f} us")


if __name__ == "__main__":
    sys.exit(main())

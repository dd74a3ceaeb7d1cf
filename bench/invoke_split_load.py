"""bench/invoke_split.py's load generator: one keep-alive connection, one request at
a time on a blocking socket, each call stamped with time.monotonic_ns() before its send
and after its answer is read, and around each call the time given tasks were runnable
but not running (run_delay) and the time they ran (/proc/<pid>/task/<tid>/schedstat)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Calls", "SchedStat", "replica_tasks", "run_calls", "throttling"]

now_ns = time.monotonic_ns


class SchedStat:
    """Sums over some tasks of /proc/<pid>/task/<tid>/schedstat, read with pread: the
    ns they ran on a CPU, and their run_delay (ns runnable, not running)."""

    def __init__(self, pids: list[int], main_only: bool | None = None) -> None:
        """Every thread of `pids`; main_only True: only their main threads, False:
        only their other threads."""
        self.fds: list[int] = []
        for pid in pids:
            for tid in os.listdir(f"/proc/{pid}/task"):
                if main_only is not None and (tid == str(pid)) != main_only:
                    continue
                with contextlib.suppress(FileNotFoundError):
                    self.fds.append(os.open(f"/proc/{pid}/task/{tid}/schedstat", os.O_RDONLY))

    def read(self) -> tuple[int, int]:
        ran = waited = 0
        for fd in self.fds:
            with contextlib.suppress(OSError, IndexError, ValueError):  # a thread that ended
                fields = os.pread(fd, 128, 0).split()
                ran += int(fields[0])
                waited += int(fields[1])
        return ran, waited

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)


@dataclass
class Calls:
    """Per call: send and receive stamps, the function's own stamp, and per SchedStat
    NAME the ns its tasks waited for a CPU ("wait:NAME") and ran ("cpu:NAME")."""

    sent: list[int] = field(default_factory=list)
    received: list[int] = field(default_factory=list)
    worker: list[int | None] = field(default_factory=list)
    waits: dict[str, list[int]] = field(default_factory=dict)  # "wait:"/"cpu:" NAME -> ns

    def latencies_ms(self) -> list[float]:
        return [(b - a) / 1e6 for a, b in zip(self.sent, self.received, strict=True)]


def request_bytes(port: int, key: str | None) -> bytes:
    auth = f"Authorization: Bearer {key}\r\n" if key else ""
    head = f"POST /v1/scripts/bench/functions/noop HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
    return f"{head}{auth}Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{{}}".encode()


def read_answer(sock: socket.socket, buf: bytearray) -> bytes:
    """One HTTP answer with a Content-Length; returns its body (keeps what follows)."""
    while True:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            head = bytes(buf[:end]).lower()
            at = head.find(b"content-length:")
            length = int(head[at + 15 :].split(b"\r\n", 1)[0]) if at >= 0 else 0
            if len(buf) >= end + 4 + length:
                body = bytes(buf[end + 4 : end + 4 + length])
                del buf[: end + 4 + length]
                if not head.startswith(b"http/1.1 200"):
                    raise RuntimeError(f"call failed: {head[:200]!r} {body[:300]!r}")
                return body
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("the server closed the connection")
        buf += chunk


def run_calls(port: int, key: str | None, count: int, tasks: dict[str, SchedStat]) -> Calls:
    """`count` calls, one at a time, on one keep-alive connection; `tasks` are read
    before and after each."""
    request = request_bytes(port, key)
    calls = Calls()
    buf = bytearray()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(count):
            before = {name: t.read() for name, t in tasks.items()}
            t0 = now_ns()
            sock.sendall(request)
            body = read_answer(sock, buf)
            t1 = now_ns()
            for name, t in tasks.items():
                ran, waited = t.read()
                calls.waits.setdefault(f"cpu:{name}", []).append(ran - before[name][0])
                calls.waits.setdefault(f"wait:{name}", []).append(waited - before[name][1])
            calls.sent.append(t0)
            calls.received.append(t1)
            value = json.loads(body).get("result") if key else None
            calls.worker.append(value if isinstance(value, int) else None)
    return calls


def replica_tasks(port: int) -> tuple[list[int], list[Path]]:
    """Pids in the daemon's sandboxes (their cpu cgroups) and those cgroups' dirs."""
    root = Path(f"/sys/fs/cgroup/cpu/scriptd-test-{port}")
    pids, dirs = [], []
    for path in root.rglob("cgroup.procs") if root.exists() else []:
        dirs.append(path.parent)
        pids += [int(p) for p in path.read_text().split()]
    return pids, dirs


def throttling(dirs: list[Path]) -> dict[str, int]:
    total = {"nr_throttled": 0, "throttled_time": 0}
    for d in dirs:
        for line in (d / "cpu.stat").read_text().splitlines():
            name, value = line.split()
            if name in total:
                total[name] += int(value)
    return total

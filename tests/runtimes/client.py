"""A stand-in for the daemon's side of the runtime protocol, for tests and measurements.

Starts runtimes/supervisor.py as a plain subprocess (no sandbox) with one end
of a socketpair as its fd 3, collects control messages (and the worker fds
that ride on them), and talks to workers over the fds it received.
"""

from __future__ import annotations

import array
import itertools
import json
import os
import select
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

RUNTIMES = Path(__file__).resolve().parents[2] / "runtimes"
# The interpreter the supervisor runs on (a script's venv may hold any python 3.8+).
PYTHON = os.environ.get("SCRIPTD_RUNTIME_PYTHON", sys.executable)
SUPERVISOR = RUNTIMES / "supervisor.py"
_ids = itertools.count(1)


def encode(message: dict[str, Any]) -> bytes:
    body = json.dumps(message).encode()
    return struct.pack(">I", len(body)) + body


def _recv_exact(sock: socket.socket, n: int, deadline: float) -> bytes:
    data = b""
    while len(data) < n:
        wait = deadline - time.monotonic()
        if wait <= 0 or not select.select([sock], [], [], wait)[0]:
            raise TimeoutError(f"no frame within the time allowed (got {len(data)}/{n} bytes)")
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError("socket closed")
        data += chunk
    return data


class Worker:
    def __init__(self, info: dict[str, Any], fd: int) -> None:
        self.id: int = info["worker"]
        self.pid: int = info["pid"]
        self.slot: int = info["slot"]
        self.sock = socket.socket(fileno=fd)

    def send(self, message: dict[str, Any]) -> None:
        self.sock.sendall(encode(message))

    def recv(self, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        (size,) = struct.unpack(">I", _recv_exact(self.sock, 4, deadline))
        return json.loads(_recv_exact(self.sock, size, deadline))

    def call(self, function: str, payload: Any = None, timeout: float = 10.0) -> dict[str, Any]:
        call_id = f"c{next(_ids)}"
        message = {"t": "call", "id": call_id, "function": function, "deadline": time.time() + 30}
        if payload is not None:
            message["payload"] = payload
        self.send(message)
        reply = self.recv(timeout)
        assert reply["t"] == "result" and reply["id"] == call_id, reply
        return reply

    def close(self) -> None:
        self.sock.close()


class Supervisor:
    """One running supervisor and the messages it sent on its control socket."""

    def __init__(
        self,
        language: str,
        source: Path,
        workers: int = 1,
        *extra: str,
        python: str = PYTHON,
        flags: tuple[str, ...] = ("-I",),
    ) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        argv = [
            python,
            *flags,
            str(SUPERVISOR),
            "--language",
            language,
            "--workers",
            str(workers),
            "--source",
            str(source),
            *extra,
        ]
        fd = theirs.fileno()
        self.proc = subprocess.Popen(
            argv,
            pass_fds=(fd, 3),
            preexec_fn=lambda: os.dup2(fd, 3),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        theirs.close()
        self.control = ours
        self.buf = b""
        self.fds: list[int] = []
        self.pending: list[tuple[dict[str, Any], list[int]]] = []
        self.workers: dict[int, Worker] = {}

    def _read_more(self, deadline: float) -> None:
        wait = deadline - time.monotonic()
        if wait <= 0 or not select.select([self.control], [], [], wait)[0]:
            raise TimeoutError("no control message in time")
        fds = array.array("i")
        data, ancdata, _flags, _addr = self.control.recvmsg(1 << 16, socket.CMSG_SPACE(16 * 4))
        for level, kind, cdata in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(cdata[: len(cdata) - len(cdata) % fds.itemsize])
        if not data:
            raise EOFError(f"control socket closed{self._exit_report()}")
        self.buf += data
        # One recvmsg may carry several frames: fds queue up and go to `worker`
        # frames in order, as the protocol says.
        self.fds += fds
        while len(self.buf) >= 4:
            (size,) = struct.unpack(">I", self.buf[:4])
            if len(self.buf) < 4 + size:
                break
            message = json.loads(self.buf[4 : 4 + size])
            self.buf = self.buf[4 + size :]
            fd_list = [self.fds.pop(0)] if message["t"] == "worker" else []
            self.pending.append((message, fd_list))

    def _exit_report(self) -> str:
        """How the supervisor ended, with the tail of its stderr, when it has (a closed
        control socket alone does not say why)."""
        try:
            code = self.proc.wait(5)
        except subprocess.TimeoutExpired:
            return " (the supervisor is still running)"
        tail = self.proc.stderr.read()[-2000:].decode(errors="replace") if self.proc.stderr else ""
        return f" (the supervisor exited with {code}; its stderr ends: {tail!r})"

    def next(self, timeout: float = 10.0) -> dict[str, Any]:
        """The next control message; a `worker` message also registers its worker."""
        deadline = time.monotonic() + timeout
        while not self.pending:
            self._read_more(deadline)
        message, fds = self.pending.pop(0)
        if message["t"] == "worker":
            assert len(fds) == 1, (message, fds)
            self.workers[message["worker"]] = Worker(message, fds[0])
        return message

    def expect(self, kind: str, timeout: float = 10.0) -> dict[str, Any]:
        message = self.next(timeout)
        assert message["t"] == kind, message
        return message

    def expect_each(self, *kinds: str, timeout: float = 10.0) -> dict[str, dict[str, Any]]:
        """The next len(kinds) messages, one of each kind in any order (after kill_worker,
        the replacement's "worker" may come before the killed one's "worker_exit")."""
        found: dict[str, dict[str, Any]] = {}
        for _ in kinds:
            message = self.next(timeout)
            assert message["t"] in kinds and message["t"] not in found, message
            found[message["t"]] = message
        return found

    def send(self, message: dict[str, Any]) -> None:
        self.control.sendall(encode(message))

    def start(self, workers: int = 1, timeout: float = 10.0) -> dict[str, Any]:
        """Wait for hello and the first `workers` workers; returns hello."""
        hello = self.expect("hello", timeout)
        for _ in range(workers):
            self.expect("worker", timeout)
        return hello

    def worker(self) -> Worker:
        return next(iter(self.workers.values()))

    def wait_exit(self, timeout: float = 10.0) -> int:
        return self.proc.wait(timeout)

    def close(self) -> None:
        for w in self.workers.values():
            w.close()
        self.control.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream:
                stream.close()

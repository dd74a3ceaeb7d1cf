"""A concurrent worker (runtimes/python/concurrently.py, runtimes/node/concurrently.mjs)
acknowledges the calls a read brings before any of them runs, and "before" holds when
its socket is full: the ack then waits in the worker's own buffer, and the calls wait
with it. A worker that dies then has run none of the calls the daemon never saw
acknowledged (the daemon sends those to another worker)."""

from __future__ import annotations

import fcntl
import json
import os
import select
import shutil
import signal
import socket
import struct
import termios
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require
from tests.runtimes.client import Supervisor, Worker
from tests.runtimes.projects import write_project

MAIN = {
    "python": {
        "main.py": """
import os


def big(n):
    return "x" * n


async def touch(path):
    with open(path, "a") as f:
        f.write(f"{os.getpid()}\\n")
    return True
"""
    },
    "javascript": {
        "main.js": """
const fs = require('fs');
exports.big = ({ n }) => 'x'.repeat(n);
exports.touch = ({ path }) => { fs.appendFileSync(path, `${process.pid}\\n`); return true; };
"""
    },
}
BIG = 8 << 20  # a result far over what a unix socket holds: most of it waits in the worker


def _queued(sock: socket.socket, request: int) -> int:
    """Bytes in the socket's receive queue (FIONREAD), or sent and not yet read by the
    peer (TIOCOUTQ, SIOCOUTQ for sockets)."""
    return int(struct.unpack("i", fcntl.ioctl(sock.fileno(), request, b"\0" * 4))[0])


def _wait(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _frames_until_eof(sock: socket.socket, timeout: float = 10.0) -> list[dict[str, Any]]:
    """Every whole frame left on the socket until the worker's end closes."""
    data, deadline = b"", time.monotonic() + timeout
    while True:
        assert select.select([sock], [], [], max(0.0, deadline - time.monotonic()))[0], "no EOF"
        chunk = sock.recv(1 << 20)
        if not chunk:
            break
        data += chunk
    frames, pos = [], 0
    while pos + 4 <= len(data):
        (size,) = struct.unpack(">I", data[pos : pos + 4])
        if pos + 4 + size > len(data):
            break  # the big result, cut where the worker died
        frames.append(json.loads(data[pos + 4 : pos + 4 + size]))
        pos += 4 + size
    return frames


@pytest.mark.parametrize("language", ["python", "javascript"])
def test_calls_read_while_the_socket_is_full_wait_for_their_ack(
    tmp_path: Path, language: str
) -> None:
    if language == "javascript":
        require(shutil.which("node") is not None, "node is not installed")
    source = write_project(tmp_path / "src", MAIN[language])
    marker = tmp_path / "touched"
    sup = Supervisor(language, source, 1, "--concurrency", "4")
    try:
        sup.start(1)
        worker: Worker = sup.worker()
        worker.send({"t": "call", "id": "big", "function": "big", "payload": {"n": BIG}})
        # Its result fills the socket (this side reads nothing): the rest waits in the worker.
        filled = _wait(lambda: _queued(worker.sock, termios.FIONREAD) > 1024)
        assert filled, "the worker never wrote the big result"
        touch = {"t": "call", "id": "touch", "function": "touch", "payload": {"path": str(marker)}}
        worker.send(touch)
        read = _wait(lambda: _queued(worker.sock, termios.TIOCOUTQ) == 0)
        assert read, "the worker never read the call"
        # Had it not waited for its ack, the call would run now: give it the chance.
        ran = _wait(marker.exists, timeout=0.5)
        os.kill(worker.pid, signal.SIGKILL)
        frames = _frames_until_eof(worker.sock)
        acked = {i for frame in frames if frame["t"] == "started" for i in frame["ids"]}
        assert "big" in acked
        assert "touch" not in acked  # its ack was still in the worker's buffer...
        assert not ran and not marker.exists()  # ...so the call had not run
    finally:
        sup.close()

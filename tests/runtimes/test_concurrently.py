"""A concurrent worker (runtimes/python/concurrently.py, runtimes/node/concurrently.mjs)
acknowledges the calls a read brings before any of them runs, and "before" holds when
its socket is full: the ack then waits in the worker's own buffer, and the calls wait
with it. A worker that dies then has run none of the calls the daemon never saw
acknowledged (the daemon sends those to another worker).

A Python worker spoken to frame by frame: a batch of calls written at once is
acknowledged before any result, each call gets its own result (value, output, CPU
time), and frames the daemon would never send do not break the worker."""

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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require
from tests.runtimes.client import Supervisor, Worker, encode
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


BATCH_MAIN_PY = """
import asyncio
import time


async def echo(x):
    print("echo", x)
    return x


async def burn(ms):
    t0 = time.process_time()
    while time.process_time() - t0 < ms / 1000:
        pass
    await asyncio.sleep(0)
    return ms


def shout(n):
    print("y" * n)
    return n
"""
MAX_OUTPUT = 64


@pytest.fixture(scope="module")
def batch_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    src = write_project(tmp_path_factory.mktemp("conc"), {"main.py": BATCH_MAIN_PY})
    sup = Supervisor("python", src, 1, "--concurrency", "8", "--max-output", str(MAX_OUTPUT))
    sup.start(1)
    yield sup.worker()
    sup.close()


def batch(worker: Worker, calls: list[tuple[str, Any, Any]]) -> tuple[list[Any], dict[str, Any]]:
    """Write the calls in one send; the frames read until every call is answered:
    the `started` ids in order, and the results by id."""
    frames = [{"t": "call", "id": cid, "function": fn, "payload": payload,
               "deadline": time.time() + 30} for cid, fn, payload in calls]  # fmt: skip
    worker.sock.sendall(b"".join(encode(f) for f in frames))
    started: list[Any] = []
    results: dict[str, Any] = {}
    while len(results) < len(calls):
        frame = worker.recv()
        if frame["t"] == "started":
            started += frame["ids"]
        else:
            assert frame["t"] == "result", frame
            assert frame["id"] in started, "a result came before its call was acknowledged"
            results[frame["id"]] = frame
    return started, results


def test_a_batch_is_acknowledged_then_each_call_answered_with_its_own_output(
    batch_worker: Worker,
) -> None:
    calls = [(f"e{i}", "echo", {"x": i}) for i in range(6)] + [("s1", "shout", {"n": 3})]
    started, results = batch(batch_worker, calls)
    assert started == [cid for cid, _, _ in calls]
    for i in range(6):
        r = results[f"e{i}"]
        assert (r["ok"], r["value"], r["stdout"], r["stderr"]) == (True, i, f"echo {i}\n", "")
        assert r["truncated"] is False and r["cpu_ms"] >= 0 and r["wall_ms"] >= 0
    assert (results["s1"]["value"], results["s1"]["stdout"]) == (3, "yyy\n")


def test_cpu_time_and_truncated_output_are_each_calls_own(batch_worker: Worker) -> None:
    calls = [("b1", "burn", {"ms": 40}), ("e1", "echo", {"x": 1}), ("s1", "shout", {"n": 500})]
    _, results = batch(batch_worker, calls)
    assert 35 <= results["b1"]["cpu_ms"] < 1000
    assert results["e1"]["cpu_ms"] < 20  # not the CPU of the call before it
    loud = results["s1"]
    assert loud["truncated"] is True and loud["stdout"].startswith("y" * MAX_OUTPUT)
    assert "more bytes not shown" in loud["stdout"]


def test_a_function_name_that_is_not_a_string_is_answered_not_found(batch_worker: Worker) -> None:
    calls = [
        ("x1", ["noop"], {}),
        ("x2", {"a": 1}, {}),
        ("x3", "nope", {}),
        ("e1", "echo", {"x": 2}),
    ]
    _, results = batch(batch_worker, calls)
    for cid in ("x1", "x2", "x3"):
        assert results[cid]["ok"] is False
        assert results[cid]["error"]["type"] == "FunctionNotFound"
    assert results["e1"]["value"] == 2  # the worker serves on

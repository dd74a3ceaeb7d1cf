"""The Python CPU of the gateway's call path, in one process and without sockets: the
request's bytes go into the real front (`_Connection.data_received`), through
`FrontCalls`, the `Gateway` (cached key, record, metrics) and the real `Dispatcher`,
`Worker` and wire codec; a stand-in for the worker answers each call frame with a
no-op's result frame, and the answers land in a list. What it leaves out: the system
calls, uvloop's own work, the memory probe and the record's store writes.

Why: on the real daemon (bench/invoke_ab.py) a change of a microsecond or two per call
is inside the noise of a shared machine; here the CPU per call (process time) of the
Python alone moves by less than that between runs. Two calls in flight on one worker
of capacity 1, so every call waits in the queue, as at 32 connections.

    .venv/bin/python -m bench.call_path_cpu [--calls 10000] [--runs 5]

Compare two trees by running it from each (PYTHONPATH=. from the tree's root).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

import orjson
import uvloop

from daemon.gateway.calls import FrontCalls
from daemon.gateway.front import FrontServer
from daemon.serving import wire
from daemon.serving.dispatcher import Dispatcher, DispatchSettings
from daemon.serving.worker import Worker
from tests.daemon.gateway.front_harness import FakeEgress, _gateway
from tests.daemon.gateway.test_app import KEY_A

REQUEST = (
    b"POST /v1/scripts/alpha/functions/f HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"
    b"Authorization: Bearer " + KEY_A.key.encode() + b"\r\n"
    b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
)  # fmt: skip


class Replica:
    """The worker's owner, as a replica that takes calls."""

    name = "bench-r1"
    accepting = True

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher
        self.busy = 0

    def call_started(self, worker: Worker) -> None:
        self.busy += 1

    def call_ended(self, worker: Worker) -> None:
        self.busy -= 1

    def worker_free(self, worker: Worker) -> None:
        self.dispatcher.offer(worker)

    def worker_closed(self, worker: Worker) -> None: ...

    def kill_worker(self, worker: Worker) -> None: ...

    def loss(self, frame: Any) -> Any: ...


class Transport:
    """Keeps what is written."""

    def __init__(self) -> None:
        self.out: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.out.append(data)

    def is_closing(self) -> bool:
        return False

    def close(self) -> None: ...

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default


NOOP_RESULT = {"t": "result", "ok": True, "value": None, "stdout": "", "stderr": "",
               "truncated": False, "cpu_ms": 0.01, "wall_ms": 0.02}  # fmt: skip


def result_frame(call_frame: bytes) -> bytes:
    """A no-op's result frame for a call frame, as the Python worker writes it."""
    return wire.encode({**NOOP_RESULT, "id": orjson.loads(call_frame[4:])["id"]})


async def one_run(calls: int) -> float:
    """CPU microseconds per call over `calls` rounds of two calls."""
    gateway = await _gateway(FakeEgress())
    serving = gateway.routes.serving("alpha")
    assert serving is not None
    dispatcher = Dispatcher("alpha", 30.0, DispatchSettings())
    serving.dispatcher = dispatcher
    worker = Worker(Replica(dispatcher), 1, 0, 1)
    channel = wire.FrameProtocol(worker.on_frame, worker.on_close)
    to_worker = Transport()
    channel.connection_made(to_worker)  # type: ignore[arg-type]
    worker.channel = channel
    dispatcher.offer(worker)
    front = FrontServer(FrontCalls(gateway))
    conns = [front.protocol() for _ in range(2)]
    for conn in conns:
        conn.connection_made(Transport())  # type: ignore[arg-type]

    def answer_worker() -> None:
        while to_worker.out:
            channel.data_received(result_frame(to_worker.out.pop(0)))

    conns[0].data_received(REQUEST)  # the first call checks the key and caches it
    for _ in range(100):
        await asyncio.sleep(0)
        answer_worker()
    recorded = gateway.recorder._buffer  # never written: emptied as it fills
    started = time.process_time()
    for i in range(calls):
        for conn in conns:
            conn.data_received(REQUEST)
        answer_worker()
        if i % 100 == 0:
            recorded.clear()
    spent = time.process_time() - started
    answered = sum(len(conn.transport.out) for conn in conns)  # type: ignore[attr-defined]
    if answered != 2 * calls + 1:
        raise RuntimeError(f"{answered} answers to {2 * calls + 1} calls")
    return spent / (2 * calls) * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    runs = sorted(uvloop.run(one_run(args.calls)) for _ in range(args.runs))
    print(f"Python CPU per call: min {runs[0]:.2f} us, median {runs[len(runs) // 2]:.2f} us "
          f"({args.runs} runs of {2 * args.calls} calls)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

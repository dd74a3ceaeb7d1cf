"""The daemon with timestamps on its call path, for bench/invoke_split.py: run as
`python -m bench.invoke_split_probe OUT_FILE <daemon.main's arguments>`.

It wraps five methods of the real daemon before `daemon.main` runs (nothing of the
product is changed on disk) and records time.monotonic_ns() (CLOCK_MONOTONIC, the
clock the worker and the load generator read too) at each:

  rx      the front's connection got bytes (_Connection.data_received, on entry)
  submit  the dispatcher was handed the call (Dispatcher.submit, on entry)
  sent    the call frame was written to the worker socket (Worker.send_call, on return)
  wrx     bytes came from a worker socket (FrameProtocol.data_received, on entry)
  tx      the answer is about to be written to the client (_Connection.flush, on entry)
  w0, w1  the execution recorder's thread began and ended a store write
          (ExecutionRecorder._write, on entry and on return)

SIGUSR2 writes what was recorded to OUT_FILE as JSON ({"rx": [...], ...}) and
clears it. The wrappers cost about a microsecond each per call.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from daemon.gateway import front, recorder
from daemon.serving import dispatcher, wire, worker

EVENTS = ("rx", "submit", "sent", "wrx", "tx", "w0", "w1")
_stamps: dict[str, list[int]] = {name: [] for name in EVENTS}
_now = time.monotonic_ns


def _on_entry(cls: type, method: str, event: str) -> None:
    original: Callable[..., Any] = getattr(cls, method)
    stamps = _stamps[event]

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        stamps.append(_now())
        return original(*args, **kwargs)

    setattr(cls, method, wrapped)


def _on_return(cls: type, method: str, event: str) -> None:
    original: Callable[..., Any] = getattr(cls, method)
    stamps = _stamps[event]

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        try:
            return original(*args, **kwargs)
        finally:
            stamps.append(_now())

    setattr(cls, method, wrapped)


def install(out: Path) -> None:
    _on_entry(front._Connection, "data_received", "rx")
    _on_entry(dispatcher.Dispatcher, "submit", "submit")
    _on_return(worker.Worker, "send_call", "sent")
    _on_entry(wire.FrameProtocol, "data_received", "wrx")
    _on_entry(front._Connection, "flush", "tx")
    _on_entry(recorder.ExecutionRecorder, "_write", "w0")
    _on_return(recorder.ExecutionRecorder, "_write", "w1")

    def dump(signum: int, frame: object) -> None:
        out.write_text(json.dumps(_stamps))
        for stamps in _stamps.values():
            stamps.clear()

    signal.signal(signal.SIGUSR2, dump)


def main() -> int:
    install(Path(sys.argv[1]))
    from daemon import main as daemon_main

    return daemon_main.main(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())

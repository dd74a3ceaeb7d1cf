"""What only the Python side does: fork or spawn mode, fd-level capture,
reaping orphans, and the harness's own errors."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.runtimes.client import Supervisor, encode
from tests.runtimes.projects import write_project

MAIN = """
import functools
import os
import subprocess
import sys


def raw_and_child():
    os.write(1, b"raw fd write\\n")
    subprocess.run(["sh", "-c", "echo from child; echo child err >&2"], check=True)
    print("print")
    return 1


def lingering_child():
    # keeps the stdout pipe open long after the call
    subprocess.Popen(["sleep", "3"])
    print("started")
    return 1


def orphan():
    out = subprocess.run(["sh", "-c", "sleep 0.2 > /dev/null 2>&1 & echo $!"],
                         capture_output=True, text=True, check=True).stdout
    return int(out)


def needs(a, b):
    return a + b


def busy_child():
    burn = "while __import__('time').process_time() < 0.05: pass"
    subprocess.run([sys.executable, "-c", burn], check=True)


def exits():
    sys.exit(4)


def chained():
    try:
        {}["key"]
    except KeyError as exc:
        raise RuntimeError("wrapped") from exc


def big():
    return "x" * 200_000


@functools.lru_cache
def cached(n):
    return n * 2


class NotAFunction:
    pass
"""

THREADED = """
import threading
import time

threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()


def add(a, b):
    return a + b
"""


def launch(tmp_path: Path, main: str, *extra: str, workers: int = 1) -> Supervisor:
    source = write_project(tmp_path / "src", {"main.py": main})
    sup = Supervisor("python", source, workers, *extra)
    sup.hello = sup.start(workers)  # type: ignore[attr-defined]
    return sup


@pytest.fixture
def sup(tmp_path: Path) -> Iterator[Supervisor]:
    supervisor = launch(tmp_path, MAIN, "--max-frame", "100000")
    yield supervisor
    supervisor.close()


def test_fork_mode_is_the_default(sup: Supervisor) -> None:
    assert sup.hello["mode"] == "fork"  # type: ignore[attr-defined]


def test_decorated_functions_are_exposed_and_classes_are_not(sup: Supervisor) -> None:
    functions = sup.hello["functions"]  # type: ignore[attr-defined]
    assert "cached" in functions and "NotAFunction" not in functions
    assert sup.worker().call("cached", {"n": 21})["value"] == 42


def test_output_of_raw_writes_and_child_processes_is_captured(sup: Supervisor) -> None:
    reply = sup.worker().call("raw_and_child")
    assert reply["stdout"] == "raw fd write\nfrom child\nprint\n"
    assert reply["stderr"] == "child err\n"


def test_a_child_holding_stdout_does_not_hold_the_call(sup: Supervisor) -> None:
    t0 = time.monotonic()
    reply = sup.worker().call("lingering_child")
    assert reply["ok"] and reply["stdout"] == "started\n"
    assert time.monotonic() - t0 < 2.5  # returns before the child's 3 s sleep ends


def test_orphans_are_reaped(sup: Supervisor) -> None:
    pid = sup.worker().call("orphan")["value"]
    deadline = time.monotonic() + 3
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(f"/proc/{pid}"), "the orphan was left a zombie"


def test_cpu_of_a_child_counts_once_in_the_call_that_waited_for_it(sup: Supervisor) -> None:
    worker = sup.worker()
    assert worker.call("busy_child")["cpu_ms"] >= 50
    assert worker.call("needs", {"a": 1, "b": 2})["cpu_ms"] < 50


def test_frames_sent_together_and_a_payload_past_the_read_buffer(sup: Supervisor) -> None:
    worker = sup.worker()
    long_text = "x" * 80_000  # more than one read of the worker's 64 KiB buffer
    calls = [
        {"t": "call", "id": "long", "function": "needs", "payload": {"a": long_text, "b": "!"}},
        {"t": "ping", "id": "p"},
        {"t": "call", "id": "short", "function": "needs", "payload": {"a": 1, "b": 2}},
    ]
    worker.sock.sendall(b"".join(encode(call) for call in calls))
    replies = [worker.recv() for _ in calls]
    assert [r["id"] for r in replies] == ["long", "p", "short"]
    assert replies[0]["value"] == long_text + "!"
    assert replies[2]["value"] == 3


def test_payload_must_be_an_object(sup: Supervisor) -> None:
    reply = sup.worker().call("needs", [1, 2])
    assert reply["error"]["type"] == "BadPayload"
    assert "an array" in reply["error"]["message"]


def test_missing_argument_is_a_type_error_without_harness_frames(sup: Supervisor) -> None:
    error = sup.worker().call("needs", {"a": 1})["error"]
    assert error["type"] == "TypeError" and "'b'" in error["message"]
    assert "harness" not in error["traceback"]


def test_sys_exit_in_a_function_is_an_error_not_an_exit(sup: Supervisor) -> None:
    worker = sup.worker()
    assert worker.call("exits")["error"]["type"] == "SystemExit"
    assert worker.call("needs", {"a": 1, "b": 1})["value"] == 2


def test_chained_exceptions_keep_their_cause(sup: Supervisor) -> None:
    text = sup.worker().call("chained")["error"]["traceback"]
    assert "KeyError: 'key'" in text and "RuntimeError: wrapped" in text
    assert "harness" not in text


def test_result_over_the_max_frame_is_refused(sup: Supervisor) -> None:
    error = sup.worker().call("big")["error"]
    assert error["type"] == "ResultTooLarge" and "100000" in error["message"]


def test_an_oversized_frame_ends_the_worker(sup: Supervisor) -> None:
    worker = sup.worker()
    worker.sock.sendall((10_000_000).to_bytes(4, "big"))
    gone = sup.expect("worker_exit")
    assert gone["code"] == 2
    sup.expect("worker")


def test_threads_at_import_switch_to_spawned_workers(tmp_path: Path) -> None:
    sup = launch(tmp_path, THREADED, workers=2)
    try:
        assert sup.hello["mode"] == "spawn"  # type: ignore[attr-defined]
        first = sup.worker()
        assert first.call("add", {"a": 1, "b": 2})["value"] == 3
        sup.send({"t": "kill_worker", "worker": first.id})
        got = sup.expect_each("worker_exit", "worker")
        assert got["worker_exit"]["worker"] == first.id
        new = sup.workers[got["worker"]["worker"]]
        assert new.call("add", {"a": 2, "b": 2})["value"] == 4
    finally:
        sup.close()


def test_spawn_mode_can_be_forced(tmp_path: Path) -> None:
    sup = launch(tmp_path, MAIN, "--mode", "spawn")
    try:
        assert sup.hello["mode"] == "spawn"  # type: ignore[attr-defined]
        assert sup.worker().call("raw_and_child")["stdout"].startswith("raw fd write")
    finally:
        sup.close()


def test_a_slot_that_keeps_dying_is_respawned_with_backoff(sup: Supervisor) -> None:
    gaps = []
    for _ in range(4):
        worker = sup.workers[max(sup.workers)]
        worker.send({"t": "call", "id": "x", "function": "exits_hard", "payload": {}})
        worker.sock.sendall((10_000_000).to_bytes(4, "big"))  # protocol error: exit 2
        sup.expect("worker_exit")
        t0 = time.monotonic()
        sup.expect("worker")
        gaps.append(time.monotonic() - t0)
    assert gaps[0] < 0.05 and gaps[-1] >= 0.09, gaps

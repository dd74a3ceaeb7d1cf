"""One conformance suite, the same cases for the Python harness and the Node
harness (CommonJS and ES module), through the real supervisor."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require
from tests.runtimes.client import Supervisor
from tests.runtimes.projects import FUNCTIONS, VARIANTS, Variant, write_project

MAX_OUTPUT = 4096
MACHINERY = ("harness", "supervisor.py", "startup.py", "arbiter.py", "protocol.py", "capture.py",
             "errors.py", "errors.mjs", "capture.mjs", "frames.mjs", "concurrently",
             "exact_json", "typed_text", "typed_objects", "protocol_json",
             "<frozen", "node:internal")  # fmt: skip


@pytest.fixture(params=VARIANTS, ids=[v.name for v in VARIANTS])
def variant(request: pytest.FixtureRequest) -> Variant:
    if request.param.language == "javascript":
        require(shutil.which("node") is not None, "node is not installed")
    return request.param


@pytest.fixture
def project(tmp_path: Path, variant: Variant) -> Path:
    return write_project(tmp_path / "src", variant.files)


def start(variant: Variant, source: Path, workers: int = 1, *extra: str) -> Supervisor:
    return Supervisor(variant.language, source, workers, "--max-output", str(MAX_OUTPUT), *extra)


@pytest.fixture
def sup(variant: Variant, project: Path) -> Iterator[Supervisor]:
    supervisor = start(variant, project)
    supervisor.hello = supervisor.start(1)  # type: ignore[attr-defined]
    yield supervisor
    supervisor.close()


def assert_no_machinery(traceback: str) -> None:
    for word in MACHINERY:
        assert word not in traceback, traceback


def test_hello_lists_exactly_the_functions_of_main(sup: Supervisor, variant: Variant) -> None:
    hello = sup.hello  # type: ignore[attr-defined]
    assert set(hello["functions"]) == FUNCTIONS
    assert hello["language"] == variant.language
    assert hello["runtime"].split()[0] in ("python", "node")
    assert hello["version"][0].isdigit()
    assert isinstance(hello["load_ms"], (int, float)) and hello["load_ms"] >= 0
    assert hello["workers"] == 1


def test_sync_call(sup: Supervisor) -> None:
    reply = sup.worker().call("add", {"a": 2, "b": 3})
    assert reply["ok"] and reply["value"] == 5
    assert reply["wall_ms"] >= 0 and reply["cpu_ms"] >= 0


def test_async_call_using_a_relative_import(sup: Supervisor) -> None:
    reply = sup.worker().call("greet_async", {"name": "bob"})
    assert reply["ok"] and reply["value"] == "hello bob"


def test_plain_import_of_a_sibling_file(sup: Supervisor) -> None:
    assert sup.worker().call("uses_plain", {})["value"] == 42


def test_payload_is_passed_whole(sup: Supervisor) -> None:
    payload = {"x": 1, "nested": {"list": [1, "two", None, True]}, "text": "héllo"}
    assert sup.worker().call("echo", payload)["value"] == payload


def test_prints_are_captured_per_call(sup: Supervisor) -> None:
    worker = sup.worker()
    reply = worker.call("shout", {"text": "hi", "times": 3})
    assert reply["stdout"] == "hi\nhi\nhi\n"
    assert reply["stderr"] == "err\n"
    assert reply["truncated"] is False
    quiet = worker.call("add", {"a": 1, "b": 1})
    assert quiet["stdout"] == "" and quiet["stderr"] == ""


def test_output_past_the_limit_is_cut_with_a_marker(sup: Supervisor) -> None:
    reply = sup.worker().call("flood", {"n": 10_000})
    assert reply["ok"] and reply["truncated"] is True
    kept, marker = reply["stdout"][:MAX_OUTPUT], reply["stdout"][MAX_OUTPUT:]
    assert kept == "x" * MAX_OUTPUT
    assert "output truncated: 5904 more bytes" in marker


def test_exception_gives_type_message_and_user_frames_only(
    sup: Supervisor, variant: Variant
) -> None:
    reply = sup.worker().call("boom", {})
    assert reply["ok"] is False
    error = reply["error"]
    assert error["type"] == variant.error_type
    assert error["message"] == "bad input"
    assert variant.main_file in error["traceback"] and "inner" in error["traceback"]
    assert_no_machinery(error["traceback"])


def test_result_that_is_not_json_is_a_clear_error(sup: Supervisor) -> None:
    reply = sup.worker().call("nonjson", {})
    assert reply["ok"] is False
    assert reply["error"]["type"] == "SerializationError"
    assert "nonjson()" in reply["error"]["message"] and "not JSON" in reply["error"]["message"]


def test_unknown_function(sup: Supervisor) -> None:
    reply = sup.worker().call("nope", {})
    assert reply["error"]["type"] == "FunctionNotFound"
    assert "add" in reply["error"]["message"]


def test_worker_and_supervisor_answer_ping(sup: Supervisor) -> None:
    worker = sup.worker()
    worker.send({"t": "ping", "id": 7})
    assert worker.recv() == {"t": "pong", "id": 7, "pid": worker.pid}
    sup.send({"t": "ping", "id": "x"})
    pong = sup.expect("pong")
    assert pong["id"] == "x" and pong["workers"] == [
        {"worker": worker.id, "slot": 0, "pid": worker.pid}
    ]


def test_kill_worker_reports_exit_and_respawns_with_a_new_socket(sup: Supervisor) -> None:
    old = sup.worker()
    old.send({"t": "call", "id": "long", "function": "sleep", "payload": {"s": 30}})
    time.sleep(0.05)
    sup.send({"t": "kill_worker", "worker": old.id})
    got = sup.expect_each("worker_exit", "worker")  # the slot is filled at the kill
    gone, new_info = got["worker_exit"], got["worker"]
    assert gone == {
        "t": "worker_exit",
        "worker": old.id,
        "slot": 0,
        "pid": old.pid,
        "code": None,
        "signal": 9,
        "killed": True,
    }
    assert new_info["worker"] != old.id and new_info["slot"] == 0
    new = sup.workers[new_info["worker"]]
    assert new.sock.fileno() != old.sock.fileno() or new.pid != old.pid
    with pytest.raises(EOFError):
        old.recv(timeout=2)
    assert new.call("add", {"a": 1, "b": 2})["value"] == 3


def test_kill_worker_of_a_gone_worker_is_ignored(sup: Supervisor) -> None:
    sup.send({"t": "kill_worker", "worker": 999})
    sup.send({"t": "ping", "id": 1})
    assert sup.expect("pong")["id"] == 1


def test_worker_that_exits_is_reported_and_replaced(sup: Supervisor) -> None:
    old = sup.worker()
    old.send({"t": "call", "id": "x", "function": "die", "payload": {"code": 7}})
    gone = sup.expect("worker_exit")
    assert (gone["worker"], gone["code"], gone["signal"], gone["killed"]) == (
        old.id,
        7,
        None,
        False,
    )
    new = sup.workers[sup.expect("worker")["worker"]]
    assert new.call("add", {"a": 2, "b": 2})["value"] == 4


def test_two_workers_are_two_processes(variant: Variant, project: Path) -> None:
    sup = start(variant, project, 2)
    try:
        hello = sup.start(2)
        assert hello["workers"] == 2
        workers = list(sup.workers.values())
        assert {w.slot for w in workers} == {0, 1}
        assert len({w.pid for w in workers}) == 2
        assert [w.call("add", {"a": w.slot, "b": 1})["value"] for w in workers] == [
            w.slot + 1 for w in workers
        ]
    finally:
        sup.close()


@pytest.mark.parametrize("kind", ["syntax", "missing", "raises"])
def test_load_error_is_reported_and_exits_non_zero(
    tmp_path: Path, variant: Variant, kind: str
) -> None:
    source, error_type, text = variant.load_errors[kind]
    files = {
        **{k: v for k, v in variant.files.items() if k == "package.json"},
        variant.main: source,
    }
    sup = start(variant, write_project(tmp_path / "src", files))
    try:
        message = sup.expect("load_error")
        error = message["error"]
        assert error["type"] == error_type, error
        assert text in error["message"] + error["traceback"], error
        assert_no_machinery(error["traceback"])
        assert sup.wait_exit() == 3
    finally:
        sup.close()


def test_missing_main_file_is_a_load_error(tmp_path: Path, variant: Variant) -> None:
    (tmp_path / "src").mkdir()
    sup = start(variant, tmp_path / "src")
    try:
        assert sup.expect("load_error")["error"]["type"] == "FileNotFoundError"
        assert sup.wait_exit() == 3
    finally:
        sup.close()


def test_shutdown_stops_workers_and_exits_zero(sup: Supervisor) -> None:
    pid = sup.worker().pid
    sup.send({"t": "shutdown"})
    gone = sup.expect("worker_exit")
    assert gone["killed"] is True and gone["signal"] == 15
    assert sup.wait_exit() == 0
    assert not os.path.exists(f"/proc/{pid}")


def test_closing_the_control_socket_ends_everything(sup: Supervisor) -> None:
    pid = sup.worker().pid
    sup.control.close()
    assert sup.wait_exit() == 0
    assert not os.path.exists(f"/proc/{pid}")


def test_sigterm_is_forwarded_to_workers(sup: Supervisor) -> None:
    sup.proc.terminate()
    gone = sup.expect("worker_exit")
    assert gone["signal"] == 15
    assert sup.wait_exit() == 0


def test_a_huge_error_message_is_cut(sup: Supervisor) -> None:
    reply = sup.worker().call("huge_error", {"n": 200_000})
    error = reply["error"]
    assert error["message"].startswith("eeee") and "characters cut" in error["message"]
    assert len(error["message"]) < 70_000 and len(error["traceback"]) < 70_000


def test_workers_are_the_preferred_oom_victims(sup: Supervisor) -> None:
    def score(pid: int) -> int:
        return int(Path(f"/proc/{pid}/oom_score_adj").read_text())

    worker = sup.worker()
    worker.call("add", {"a": 1, "b": 1})  # a forked worker is announced before it runs
    assert score(worker.pid) == 500
    assert score(sup.proc.pid) < 500

"""What only the Node harness does: .mjs mains, any JSON payload, values
JSON.stringify would silently change, syntax errors in imported ES modules."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require
from tests.runtimes.client import Supervisor
from tests.runtimes.projects import write_project


@pytest.fixture(autouse=True)
def _needs_node() -> None:
    require(shutil.which("node") is not None, "node is not installed")


MAIN_MJS = """
export const first = (payload) => payload;
export async function nothing() {}
export const notANumber = () => NaN;
export const aFunction = () => () => 1;
export const throwsString = () => { throw 'plain string'; };
export default function ignored() {}
export class NotExposed {}
export const timerThrows = () => new Promise(() => {
  setTimeout(() => { throw new RangeError('from a timer'); }, 1);
});
"""


@pytest.fixture
def sup(tmp_path: Path) -> Iterator[Supervisor]:
    source = write_project(tmp_path / "src", {"main.mjs": MAIN_MJS})
    supervisor = Supervisor("javascript", source)
    supervisor.hello = supervisor.start(1)  # type: ignore[attr-defined]
    yield supervisor
    supervisor.close()


def test_an_mjs_main_without_package_json_is_an_es_module(sup: Supervisor) -> None:
    assert sorted(sup.hello["functions"]) == [  # type: ignore[attr-defined]
        "aFunction",
        "first",
        "notANumber",
        "nothing",
        "throwsString",
        "timerThrows",
    ]


def test_the_payload_is_the_one_argument_whatever_its_json_type(sup: Supervisor) -> None:
    worker = sup.worker()
    assert worker.call("first", [1, 2])["value"] == [1, 2]
    assert worker.call("first", "text")["value"] == "text"


def test_undefined_comes_back_as_null(sup: Supervisor) -> None:
    reply = sup.worker().call("nothing")
    assert reply["ok"] and reply["value"] is None


@pytest.mark.parametrize("function", ["notANumber", "aFunction"])
def test_values_json_would_silently_change_are_refused(sup: Supervisor, function: str) -> None:
    assert sup.worker().call(function)["error"]["type"] == "SerializationError"


def test_a_thrown_non_error_is_reported(sup: Supervisor) -> None:
    error = sup.worker().call("throwsString")["error"]
    assert error["type"] == "Error" and "plain string" in error["message"]


def test_syntax_error_in_an_imported_es_module_names_the_file(tmp_path: Path) -> None:
    files = {
        "main.mjs": "import { g } from './lib/b.mjs';\nexport const f = g;\n",
        "lib/b.mjs": "export function g( {\n",
    }
    sup = Supervisor("javascript", write_project(tmp_path / "src", files))
    try:
        error = sup.expect("load_error")["error"]
        assert error["type"] == "SyntaxError"
        assert "lib/b.mjs" in error["traceback"]
        assert sup.wait_exit() == 3
    finally:
        sup.close()


def _children(pid: int) -> set[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return {int(p) for p in f.read().split()}


def test_a_killed_worker_is_replaced_by_the_spare_booted_ahead(sup: Supervisor) -> None:
    old = sup.worker()
    deadline = time.monotonic() + 10
    while len(_children(sup.proc.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    spare = _children(sup.proc.pid) - {old.pid}
    assert len(spare) == 1
    time.sleep(1.0)  # let the spare finish loading main
    sup.send({"t": "kill_worker", "worker": old.id})
    new = sup.workers[sup.expect_each("worker_exit", "worker")["worker"]["worker"]]
    assert {new.pid} == spare
    assert new.call("first", {"a": 1})["value"] == {"a": 1}


def test_an_uncaught_exception_during_a_call_is_its_error_then_the_worker_goes(
    sup: Supervisor,
) -> None:
    reply = sup.worker().call("timerThrows")
    assert reply["error"]["type"] == "RangeError" and "from a timer" in reply["error"]["message"]
    gone = sup.expect("worker_exit")
    assert gone["code"] == 1 and gone["killed"] is False
    sup.expect("worker")

"""Code steps: one conformance suite for the Python and the Node harness,
through the real supervisor (a step of kind `step`, run frames)."""

from __future__ import annotations

import datetime
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtimes import protocol
from tests.conftest import require
from tests.runtimes.client import Supervisor
from tests.runtimes.step_projects import FIELD, OBJECT, SPEC, STEP_VARIANTS, TYPED, StepVariant
from tests.runtimes.test_conformance import assert_no_machinery
from tests.runtimes.typed_values import same_values, typed, values_of

R1, R2 = "0b0e4f5a-7c3d-4e2f-8a1b-9c8d7e6f5a4b", "1c1e4f5a-7c3d-4e2f-8a1b-9c8d7e6f5a4b"

# x_<key> -> a typed value in; echo gives back the same value (as Python decodes it).
EXAMPLES: dict[str, Any] = {
    "b": {"b": True},
    "d": {"d": "2026-12-04"},
    "dt": {"dt": "2026-12-04T17:00:00.250Z"},
    "n": {"n": 3},
    "p": {"p": "+14155550100"},
    "s": {"s": "Ada Lovelace ✓"},
    "u": {"u": R1},
    "e": {f"e<{OBJECT}>": R1},
    "o": {f"o<{OBJECT},{FIELD}>": "gold"},
    "ab": {"a[b]": [True, None, False]},
    "ad": {"a[d]": ["2024-02-29"]},
    "adt": {"a[dt]": ["2026-01-01T00:00:00Z", "2026-06-01T12:30:00.5+02:00"]},
    "an": {"an": None},  # replaced below (the key must be the code)
    "ap": {"a[p]": []},
    "a_s": {"a[s]": ["x", "", None]},
    "au": {"a[u]": [R1.upper(), R2]},
    "ae": {f"a[e<{OBJECT}>]": [R1, R2]},
    "ao": {f"a[o<{OBJECT},{FIELD}>]": ["gold", "silver"]},
    "l": {"l": [1, "a", None, True, [2.5, {"k": "v"}]]},
    "f": {'a["f"]': ["file-1", "file-2"]},
}
EXAMPLES["an"] = {"a[n]": [1, 2.5, -0.001, 12345678901234567890123]}


@pytest.fixture(scope="module", params=STEP_VARIANTS, ids=[v.name for v in STEP_VARIANTS])
def variant(request: pytest.FixtureRequest) -> StepVariant:
    if request.param.language == "javascript":
        require(shutil.which("node") is not None, "node is not installed")
    return request.param  # type: ignore[no-any-return]


def write(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (root / name).write_text(text.lstrip("\n"))
    return root


def start_step(variant: StepVariant, source: Path, spec: Any = SPEC) -> Supervisor:
    text = spec if isinstance(spec, str) else json.dumps(spec)
    return Supervisor(variant.language, source, 1, "--kind", "step", "--step-spec", text)


@pytest.fixture(scope="module")
def step(variant: StepVariant, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Supervisor]:
    source = write(tmp_path_factory.mktemp(variant.name) / "src", variant.files)
    sup = start_step(variant, source)
    sup.hello = sup.start(1)  # type: ignore[attr-defined]
    sup.source = source  # type: ignore[attr-defined]
    yield sup
    sup.close()


def run(sup: Supervisor, **inputs: Any) -> dict[str, Any]:
    """One run frame; `mode` and `name` may be given as plain strings."""
    for key in ("mode", "name"):
        if isinstance(inputs.get(key), str):
            inputs[key] = {"s": inputs[key]}
    for key in ("count", "size"):
        if isinstance(inputs.get(key), int):
            inputs[key] = {"n": inputs[key]}
    return run_raw(sup, inputs)


def run_raw(sup: Supervisor, inputs: Any) -> dict[str, Any]:
    worker = sup.worker()
    worker.send({"t": "run", "id": "r", "inputs": inputs, "deadline": 0})
    reply = worker.recv(timeout=20)
    assert reply["t"] == "result" and reply["id"] == "r", reply
    reply["outputs"] = json.loads(reply["outputs_json"])
    return reply


def test_hello_says_step_and_its_spec(step: Supervisor, variant: StepVariant) -> None:
    hello = step.hello  # type: ignore[attr-defined]
    assert hello["kind"] == "step" and hello["functions"] == []
    assert hello["inputs"] == SPEC["inputs"] and hello["outputs"] == SPEC["outputs"]
    assert hello["language"] == variant.language


def test_the_seed_greeting_example(step: Supervisor) -> None:
    reply = run(step, mode="greet", name="Ada")
    assert reply["ok"] is True, reply
    assert reply["outputs"]["greeting"] == {"s": "Hello, Ada!"}
    assert reply["outputs"]["wrong"] == {"s": None}  # declared, not written: null
    assert reply["logs"] == [] and reply["logs_discarded"] == 0
    assert reply["cpu_ms"] >= 0 and reply["wall_ms"] >= 0


def test_every_type_code_in_and_out(step: Supervisor) -> None:
    inputs = {f"x_{key}": value for key, value in EXAMPLES.items()}
    reply = run(step, mode="echo", **inputs)
    assert reply["ok"] is True, reply
    for key, value in EXAMPLES.items():
        got = reply["outputs"][f"y_{key}"]
        assert list(got) == list(value), (key, got)
        assert same_values(TYPED[key], got, value), (key, got, value)


def run_text(sup: Supervisor, inputs: str) -> str:
    """A run frame written as text (numbers with more digits than a float holds);
    the reply's outputs_json."""
    worker = sup.worker()
    worker.sock.sendall(protocol.encode_text('{"t":"run","id":"r","inputs":' + inputs + "}"))
    size = int.from_bytes(worker.sock.recv(4), "big")
    text = b""
    while len(text) < size:
        text += worker.sock.recv(size - len(text))
    return json.loads(text)["outputs_json"]  # type: ignore[no-any-return]


def test_exact_numbers_keep_every_digit(step: Supervisor) -> None:
    pi, big = "3.14159265358979323846264338327950288", "123456789012345678901234567890"
    inputs = '{"mode":{"s":"echo"},"x_n":{"n":PI},"x_an":{"a[n]":[BIG,0.1,-7]}}'
    text = run_text(step, inputs.replace("PI", pi).replace("BIG", big))
    assert f'"y_n":{{"n":{pi}}}' in text, text
    assert f'"y_an":{{"a[n]":[{big},0.1,-7]}}' in text, text


def test_numbers_are_int_or_exact_decimals(step: Supervisor, variant: StepVariant) -> None:
    for number, kind in variant.number_kinds.items():
        outputs = json.loads(run_text(step, '{"mode":{"s":"kinds"},"x_n":{"n":' + number + "}}"))
        assert outputs["kinds"]["l"] == [["x_n", kind]], (number, outputs)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_property_every_value_comes_back_through_the_harness(
    step: Supervisor, variant: StepVariant, data: st.DataObject
) -> None:
    """decode(encode(v)) == v in the harness: random values of random type codes,
    decoded into the language's types by the step and encoded back."""
    node = variant.language == "javascript"
    keys = data.draw(st.lists(st.sampled_from(sorted(TYPED)), min_size=1, max_size=4, unique=True))
    sent = {}
    for key in keys:
        code = typed.parse_type(TYPED[key])
        value = data.draw(values_of(TYPED[key], millis=node, safe_ints=node), label=key)
        sent[key] = typed.encode(code, value, key)
    text = typed.dumps(
        {"mode": {"s": "echo"}, **{f"x_{k}": v for k, v in sent.items()}}, protocol.dumps
    )
    outputs = protocol.loads_exact(run_text(step, text))
    for key, wire in sent.items():
        got = outputs[f"y_{key}"]
        assert same_values(TYPED[key], got, wire), (key, got, wire)


def test_nulls_and_empty_lists(step: Supervisor) -> None:
    inputs = {"x_s": {"s": None}, "x_b": None, "x_l": {"l": []}, "x_ae": {f"a[e<{OBJECT}>]": []}}
    reply = run(step, mode="echo", **inputs)
    assert reply["ok"] is True, reply
    out = reply["outputs"]
    assert out["y_s"] == {"s": None} and out["y_b"] == {"b": None}
    assert out["y_l"] == {"l": []} and out["y_ae"] == {f"a[e<{OBJECT}>]": []}


def test_the_body_sees_the_language_types(step: Supervisor, variant: StepVariant) -> None:
    inputs = {f"x_{key}": EXAMPLES[key] for key in variant.kinds}
    reply = run(step, mode="kinds", **inputs)
    assert reply["ok"] is True, reply
    seen = dict(reply["outputs"]["kinds"]["l"])
    assert seen == {f"x_{key}": kind for key, kind in variant.kinds.items()}


@pytest.mark.parametrize(
    ("field", "value", "expected", "received"),
    [
        ("x_s", {"n": 3}, "expected s (string)", "a value of type n"),
        ("x_n", {"n": "3"}, "expected n (number)", '"3"'),
        ("x_d", {"d": "2026-02-30"}, "expected d (date)", "2026-02-30"),
        ("x_dt", {"dt": "2026-12-04T17:00:00"}, "expected dt (date-time)", "2026-12-04T17:00:00"),
        ("x_p", {"p": "0155 5501"}, "expected p (phone number)", "0155 5501"),
        ("x_u", {"u": "not-a-uuid"}, "expected u (UUID)", "not-a-uuid"),
        ("x_e", {f"e<{R2}>": R1}, f"expected e<{OBJECT}>", f"a value of type e<{R2}>"),
        ("x_ab", {"a[b]": [True, 1]}, "expected a[b] (array of b (boolean))", "item 1"),
        ("x_l", {"l": "abc"}, "expected l (untyped list)", "abc"),
        ("x_s", "Ada", "expected s (string)", "Ada"),
    ],
)
def test_a_wrong_type_in_names_field_expected_and_received(
    step: Supervisor, field: str, value: Any, expected: str, received: str
) -> None:
    reply = run(step, mode="echo", **{field: value})
    assert reply["ok"] is False
    error = reply["error"]
    assert error["type"] == "InputError", error
    assert f'input "{field}"' in error["message"] and expected in error["message"], error
    assert received in error["message"], error
    assert reply["outputs"] == {} and reply["logs"] == []


def test_undeclared_and_missing_inputs(step: Supervisor) -> None:
    reply = run(step, mode="greet", nickname={"s": "A"})
    assert reply["error"]["type"] == "InputError"
    assert 'input "nickname" is not declared' in reply["error"]["message"]
    missing = run(step, mode="greet")  # name not given: null
    assert missing["ok"] is True and missing["outputs"]["greeting"]["s"].startswith("Hello, ")


def test_a_wrong_type_out_is_an_error_at_the_line(step: Supervisor, variant: StepVariant) -> None:
    reply = run(step, mode="wrong_out")
    error = reply["error"]
    assert reply["ok"] is False and error["type"] == "OutputError", error
    assert 'output "wrong": expected s (string), received' in error["message"]
    assert "42" in error["message"]
    assert variant.main in error["traceback"], error
    assert_no_machinery(error["traceback"])


def test_an_undeclared_output_is_refused(step: Supervisor) -> None:
    error = run(step, mode="undeclared")["error"]
    assert error["type"] == "OutputError"
    assert 'output "nope" is not declared' in error["message"] and "greeting" in error["message"]


def test_200_messages_of_1_kb_keep_100_kb_and_count_the_rest(step: Supervisor) -> None:
    reply = run(step, mode="flood", count=200, size=1024)
    assert reply["ok"] is True, reply
    logs = reply["logs"]
    assert len(logs) == 100 and reply["logs_discarded"] == 100
    assert sum(len(entry["message"].encode()) for entry in logs) == 100 * 1024
    assert [entry["message"][:3] for entry in logs[:2]] == ["0xx", "1xx"]
    for entry in logs:
        stamp = datetime.datetime.fromisoformat(entry["ts"].replace("Z", "+00:00"))
        assert stamp.tzinfo is not None
        assert abs(stamp - datetime.datetime.now(datetime.UTC)) < datetime.timedelta(minutes=5)


def test_a_20_kb_message_is_truncated_with_a_marker(step: Supervisor) -> None:
    reply = run(step, mode="big", size=20 * 1024)
    (entry,) = reply["logs"]
    data = entry["message"].encode()
    kept = len(data) - len(data.lstrip(b"z"))
    assert 8 * 1024 - 40 < len(data) <= 8 * 1024
    marker = f" [truncated: {20 * 1024 - kept} more bytes]"
    assert entry["message"] == "z" * kept + marker
    assert reply["logs_discarded"] == 0


def test_an_exception_stops_the_step_and_keeps_partial_outputs(
    step: Supervisor, variant: StepVariant
) -> None:
    reply = run(step, mode="fail")
    assert reply["ok"] is False
    error = reply["error"]
    assert error["type"] == variant.error_type and error["message"] == "name is required"
    assert variant.main in error["traceback"], error
    assert_no_machinery(error["traceback"])
    assert reply["outputs"] == {"greeting": {"s": "partial"}}
    assert [entry["message"] for entry in reply["logs"]] == ["before the error"]


def test_stdout_and_stderr_are_captured_apart_from_the_log(step: Supervisor) -> None:
    reply = run(step, mode="print")
    assert reply["stdout"] == "to stdout\n" and reply["stderr"] == "to stderr\n"
    assert [entry["message"] for entry in reply["logs"]] == ["to the log"]


def test_nothing_leaks_from_one_run_to_the_next(step: Supervisor) -> None:
    assert run(step, mode="leak")["outputs"]["leaked"] == {"b": False}
    assert run(step, mode="leak")["outputs"]["leaked"] == {"b": False}


def test_a_call_frame_to_a_step_is_the_wrong_kind(step: Supervisor) -> None:
    reply = step.worker().call("greet", {})
    assert reply["ok"] is False and reply["error"]["type"] == "WrongKind"


def test_the_body_is_compiled_once_not_per_call(variant: StepVariant, tmp_path: Path) -> None:
    source = write(tmp_path / "src", variant.files)
    sup = start_step(variant, source)
    try:
        sup.start(1)
        assert run(sup, mode="greet", name="Ada")["outputs"]["greeting"] == {"s": "Hello, Ada!"}
        (source / variant.main).write_text(variant.syntax_error)  # ignored by this worker
        assert run(sup, mode="greet", name="Bo")["outputs"]["greeting"] == {"s": "Hello, Bo!"}
    finally:
        sup.close()


def test_a_body_that_does_not_parse_is_a_load_error(variant: StepVariant, tmp_path: Path) -> None:
    source = write(tmp_path / "src", {variant.main: "x = 1\n" + variant.syntax_error})
    sup = start_step(variant, source)
    try:
        error = sup.expect("load_error")["error"]
        assert error["type"] == "SyntaxError", error
        assert variant.main in error["message"] + error["traceback"], error
        assert sup.wait_exit() == protocol.LOAD_ERROR_EXIT
    finally:
        sup.close()


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ({"inputs": {"first name": "s"}}, ['input name "first name" is not an identifier']),
        (
            {"outputs": {"log": "s", "x": "q"}},
            ['output name "log" is reserved', "unknown type code"],
        ),
        ({"inputs": {"when": f"e<{OBJECT[:-1]}>"}}, ["is not a UUID"]),
        ("{not json", ["not JSON"]),
    ],
)
def test_a_bad_spec_is_a_load_error_naming_every_problem(
    variant: StepVariant, tmp_path: Path, spec: Any, words: list[str]
) -> None:
    source = write(tmp_path / "src", {variant.main: "outputs.log('x')\n"})
    sup = start_step(variant, source, spec)
    try:
        error = sup.expect("load_error")["error"]
        assert error["type"] == "StepSpecError", error
        for word in words:
            assert word in error["message"], error
    finally:
        sup.close()

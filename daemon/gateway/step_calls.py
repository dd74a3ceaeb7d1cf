"""A code step's run, one implementation for both HTTP fronts: the aiohttp route
(daemon/gateway/step_route.py) and the lean front (daemon/gateway/calls.py) read
the request their own way, then hand the body to `run_step` and turn what it gives
back into their own answer objects.

    body {"inputs": {name: typed value, ...}}
    200  {"outputs": {name: typed value, ...}, "execution_id": "..."}
    422  {"error": {"type", "message", "traceback", ...}, "outputs": {...partial...},
          "execution_id": "..."}                      the step raised, or a value had
                                                      the wrong type (InputError, OutputError)
    ?details=1 adds "logs" (each {"ts", "message"}), "logs_discarded", "stdout" and
    "stderr" to both answers.

Numbers stay exact both ways: the body is parsed with decimal.Decimal for
non-integers and the inputs are written again with the same digits; the outputs
come from the worker as JSON text (outputs_json) and are spliced into the answer
without being parsed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson

from daemon.gateway.app import Gateway
from daemon.gateway.recorder import Call
from daemon.serving.call_errors import CallError, FunctionError
from daemon.serving.dispatcher import CallResult
from daemon.serving.replica_runner import ServingVersion
from daemon.serving.target import RunTarget

__all__ = [
    "STEP_FUNCTION",
    "StepAnswer",
    "StepRefusal",
    "inputs_json",
    "not_a_step",
    "run_step",
    "wants_details",
]

STEP_FUNCTION = "(step)"  # the execution record's function for a step's run
_YES = ("1", "true", "yes")


@dataclass(frozen=True, slots=True)
class StepAnswer:
    """200 (the outputs) or 422 (the step raised): the JSON body, recorded already."""

    status: int
    body: bytes


@dataclass(frozen=True, slots=True)
class StepRefusal:
    """A body the gateway refuses before any worker sees it (not recorded yet)."""

    status: int
    kind: str
    message: str


def not_a_step(target: RunTarget) -> str | None:
    """Why `target` has no /run route (404), checked before the body is read."""
    if target.step_spec is not None:
        return None
    return (
        f"script {target.script!r} is not a code step: call its functions at "
        f"/v1/scripts/{target.script}/functions/{{function}}"
    )


def wants_details(flag: str) -> bool:
    """The value of ?details= asks for the logs in the answer."""
    return flag in _YES


async def run_step(
    gateway: Gateway, serving: ServingVersion, record: Call, raw: bytes, details: bool
) -> StepAnswer | StepRefusal | CallError:
    """Run the step with the request body `raw`: its answer (recorded), the refusal of
    the body, or the dispatcher's error for the front to answer with Gateway.record_failure."""
    inputs = inputs_json(raw)
    if isinstance(inputs, str):
        return StepRefusal(400, "bad_request", inputs)
    gateway.keep_inputs(record, inputs)
    try:
        result = await serving.dispatcher.run(inputs, call_id=record.id)
    except FunctionError as exc:
        return StepAnswer(422, _record_raised(gateway, record, exc, details))
    except CallError as exc:
        return exc
    return StepAnswer(200, _record_answer(gateway, record, result, details))


def _record_answer(gateway: Gateway, record: Call, result: CallResult, details: bool) -> bytes:
    frame = result.frame
    outputs = _outputs(frame)
    record.status = "ok"
    record.queue_ms, record.run_ms, record.cpu_ms = result.queue_ms, result.run_ms, result.cpu_ms
    record.peak_memory_bytes = frame.get("peak_memory_bytes")
    _keep_step_details(gateway, record, frame, outputs)
    record.stdout, record.stderr = result.stdout, result.stderr
    record.http_log = gateway.http_log(result.replica, result.egress_lane)
    gateway.recorder.record(record)
    return _body({}, outputs, record.id, frame if details else None)


def _record_raised(gateway: Gateway, record: Call, exc: FunctionError, details: bool) -> bytes:
    frame = exc.frame
    outputs = _outputs(frame)
    _keep_step_details(gateway, record, frame, outputs)
    doc = gateway.record_failure(record, exc)  # the answer is the step's own, below
    error = {k: v for k, v in doc["error"].items() if k not in ("stdout", "stderr")}
    return _body({"error": error}, outputs, record.id, frame if details else None)


def _keep_step_details(
    gateway: Gateway, record: Call, frame: dict[str, Any], outputs: bytes
) -> None:
    """The record's result is the outputs (partial after an error), with their
    exact digits; its details gain the logs."""
    gateway.recorder.keep_result(record, orjson.Fragment(outputs), len(outputs))
    kept = record.details if record.details is not None else {}
    kept.update(logs=frame.get("logs", []), logs_discarded=frame.get("logs_discarded", 0))
    record.details = kept


def _outputs(frame: dict[str, Any]) -> bytes:
    text = frame.get("outputs_json")
    return text.encode() if isinstance(text, str) and text else b"{}"


def _body(head: dict[str, Any], outputs: bytes, cid: str, frame: dict[str, Any] | None) -> bytes:
    extra: dict[str, Any] = {"execution_id": cid}
    if frame is not None:
        extra.update(
            logs=frame.get("logs", []),
            logs_discarded=frame.get("logs_discarded", 0),
            stdout=frame.get("stdout", ""),
            stderr=frame.get("stderr", ""),
        )
    tail = orjson.dumps(extra)[1:]  # '"execution_id":...}'
    start = orjson.dumps(head)[:-1] + (b"," if head else b"")
    return start + b'"outputs":' + outputs + b"," + tail


# A JSON number with a fraction or an exponent has a digit just before its "." or "e";
# orjson reads an integer past 64 bits (19 digits and more) as a float.
_MAYBE_FLOAT = re.compile(rb"[0-9][.eE]|[0-9]{19}")
_NESTED = 256  # brackets: below this, json (limit ~1000 levels) parses what orjson does


def inputs_json(raw: bytes) -> bytes | str:
    """The inputs' JSON text with their numbers' own digits, or why the body is refused."""
    try:
        body = _parsed(raw)
    except (ValueError, RecursionError) as exc:
        return f"the body is not valid JSON: {exc}"
    if type(body) is not dict:
        return 'the body must be a JSON object: {"inputs": {name: typed value, ...}}'
    unknown = sorted(set(body) - {"inputs"})
    if unknown:
        return f"unknown field(s) {', '.join(unknown)}: the body holds only inputs"
    inputs = body.get("inputs", {})
    if inputs is None:
        inputs = {}
    if type(inputs) is not dict:
        return 'inputs must be a JSON object of name: typed value, such as {"name": {"s": "Ada"}}'
    return orjson.dumps(inputs, default=_exact)


def _parsed(raw: bytes) -> Any:
    """The body (ValueError or RecursionError: not JSON). orjson when no number can
    lose digits as a float and the nesting is far from json's recursion limit (the
    common body, at a third of the cost); else, and for its error messages, json
    with decimal.Decimal."""
    if _MAYBE_FLOAT.search(raw) is None and raw.count(b"[") + raw.count(b"{") < _NESTED:
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass  # json names the problem
    return json.loads(raw, parse_float=Decimal, parse_int=_integer, parse_constant=_no_constant)


def _integer(text: str) -> int | Decimal:
    """An integer, kept as Decimal past 64 bits: orjson writes no wider int."""
    return int(text) if len(text) < 19 else Decimal(text)


def _exact(value: Any) -> Any:
    if isinstance(value, Decimal):
        return orjson.Fragment(str(value))
    raise TypeError(f"{type(value).__name__} is not JSON")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")

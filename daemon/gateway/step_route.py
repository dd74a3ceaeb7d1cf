"""POST /v1/scripts/{script}/run: call a code step (seed 004).

    body {"inputs": {name: typed value, ...}}        Authorization: Bearer <key>
    200  {"outputs": {name: typed value, ...}, "execution_id": "..."}
    422  {"error": {"type", "message", "traceback", ...}, "outputs": {...partial...},
          "execution_id": "..."}                      the step raised, or a value had
                                                      the wrong type (InputError, OutputError)
    ?details=1 adds "logs" (each {"ts", "message"}), "logs_discarded", "stdout" and
    "stderr" to both answers.

The other statuses are the functions route's (daemon/gateway/app.py), in the same
order of checks. A script that is not a step answers 404 naming its route.

Numbers stay exact both ways: the body is parsed with decimal.Decimal for
non-integers and the inputs are written again with the same digits; the
outputs come from the worker as JSON text (outputs_json) and are spliced into
the answer without being parsed.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import orjson
from aiohttp import web

from daemon.gateway.app import EXECUTION_HEADER, JSON, Gateway
from daemon.gateway.recorder import Call
from daemon.serving.call_errors import CallError, FunctionError
from daemon.serving.dispatcher import CallResult
from daemon.serving.replica_runner import ServingVersion

__all__ = ["STEP_FUNCTION", "StepRoute"]

STEP_FUNCTION = "(step)"  # the execution record's function for a step's run


class StepRoute:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def run(self, request: web.Request) -> web.Response:
        admitted = await self.gateway.admit(request)
        if isinstance(admitted, web.Response):
            return admitted
        return await self.run_admitted(request, *admitted)

    async def run_admitted(
        self, request: web.Request, serving: ServingVersion, key: str, details: bool = False
    ) -> web.Response:
        """The run of a caller already admitted (the gateway's key, or the admin API's
        trusted caller); `details` as if ?details=1 was given."""
        gw = self.gateway
        target = serving.target
        record = gw.new_record(target, STEP_FUNCTION, key)
        cid = record.id
        if target.step_spec is None:
            message = (
                f"script {target.script!r} is not a code step: call its functions at "
                f"/v1/scripts/{target.script}/functions/{{function}}"
            )
            return gw.reject(record, 404, "not_found", message)
        raw = await gw.read_body(request, record)
        if isinstance(raw, web.Response):
            return raw
        inputs = _inputs_json(raw)
        if isinstance(inputs, str):
            return gw.reject(record, 400, "bad_request", inputs)
        details = details or request.query.get("details", "") in ("1", "true", "yes")
        keep = gw.recorder.keep_result
        record.details = {"inputs": keep(orjson.Fragment(inputs), len(inputs))}
        try:
            result = await serving.dispatcher.run(inputs, call_id=cid)
        except FunctionError as exc:
            return self._raised(record, exc, details)
        except CallError as exc:
            return gw.failed(record, exc)
        return self._answer(record, result, details)

    def _answer(self, record: Call, result: CallResult, details: bool) -> web.Response:
        frame = result.frame
        outputs = _outputs(frame)
        record.status = "ok"
        record.queue_ms, record.run_ms, record.cpu_ms = (
            result.queue_ms,
            result.run_ms,
            result.cpu_ms,
        )
        self._keep_step_details(record, frame, outputs)
        record.stdout, record.stderr = result.stdout, result.stderr
        self.gateway.recorder.record(record)
        body = _body({}, outputs, record.id, frame if details else None)
        return web.Response(body=body, headers={"Content-Type": JSON, EXECUTION_HEADER: record.id})

    def _raised(self, record: Call, exc: FunctionError, details: bool) -> web.Response:
        frame = exc.frame
        outputs = _outputs(frame)
        self._keep_step_details(record, frame, outputs)
        self.gateway.failed(record, exc)  # records it; its answer is replaced below
        error = {k: v for k, v in exc.to_json()["error"].items() if k not in ("stdout", "stderr")}
        body = _body({"error": error}, outputs, record.id, frame if details else None)
        headers = {"Content-Type": JSON, EXECUTION_HEADER: record.id}
        return web.Response(body=body, status=422, headers=headers)

    def _keep_step_details(self, record: Call, frame: dict[str, Any], outputs: bytes) -> None:
        """The record's result is the outputs (partial after an error), with their
        exact digits; its details gain the logs."""
        record.result = self.gateway.recorder.keep_result(orjson.Fragment(outputs), len(outputs))
        details = record.details if record.details is not None else {}
        details.update(logs=frame.get("logs", []), logs_discarded=frame.get("logs_discarded", 0))
        record.details = details


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


def _inputs_json(raw: bytes) -> bytes | str:
    """The inputs' JSON text with their numbers' own digits, or why the body is refused."""
    try:
        body = json.loads(raw, parse_float=Decimal, parse_constant=_no_constant)
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


def _exact(value: Any) -> Any:
    if isinstance(value, Decimal):
        return orjson.Fragment(str(value))
    raise TypeError(f"{type(value).__name__} is not JSON")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")

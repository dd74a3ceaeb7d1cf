"""The admin API's OpenAPI document, built from its route table: valid OpenAPI 3,
each query parameter typed as its own route reads it, and an execution described
as either of the two things `GET /v1/executions/{id}` answers."""

from __future__ import annotations

from typing import Any

import orjson
from openapi_spec_validator import validate

from daemon.admin.app import ROUTES
from daemon.admin.async_routes import async_call_json
from daemon.admin.openapi import openapi_document
from daemon.core.async_calls import AsyncCall, Delivery
from daemon.store.keys_table import ExecutionRow


def _query(doc: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    op = doc["paths"][path][method]
    return {p["name"]: p["schema"] for p in op["parameters"] if p["in"] == "query"}


def test_the_document_is_valid_openapi_3() -> None:
    validate(openapi_document(ROUTES))


def test_a_query_name_two_routes_share_keeps_each_routes_type() -> None:
    # Found by the fuzz tests: the notifications' ?status=, the events' ?kind= and the
    # usage's ?since= had replaced the executions' and the samples' in the document.
    doc = openapi_document(ROUTES)
    executions = _query(doc, "get", "/v1/scripts/{name}/executions")
    assert "ok" in executions["status"]["enum"] and "queued" not in executions["status"]["enum"]
    assert "duration back from now" in executions["since"]["description"]
    assert _query(doc, "get", "/v1/samples/{language}")["kind"]["enum"] == ["functions", "step"]
    assert _query(doc, "get", "/v1/notifications")["status"]["enum"][1] == "queued"
    assert _query(doc, "get", "/v1/scripts/{name}/events")["kind"]["type"] == "string"
    assert set(_query(doc, "get", "/v1/account/usage")) == {"since"}


def _execution_validator() -> Any:
    from jsonschema import Draft202012Validator
    from referencing import Registry
    from referencing.jsonschema import DRAFT202012

    doc = openapi_document(ROUTES)
    registry = Registry().with_resource("urn:admin", DRAFT202012.create_resource(doc))
    schema = {"$ref": "urn:admin#/components/schemas/Execution"}
    return Draft202012Validator(schema, registry=registry)


def test_an_execution_is_a_record_or_an_async_call() -> None:
    delivery = Delivery("2026-12-05T00:00:01.000Z", 1, None, "refused by egress", 3.5)
    call = AsyncCall(
        "e1", 1, "demo", "hello", "Secret Key", b"{}", False, "failed", True, None,
        "http://127.0.0.1:9/hook", 2, 3_600_000, 3, 1_000, 0, 1_500, 2_000, None,
        '{"type": "ValueError", "message": "boom"}',
        ({"execution_id": "x1", "status": "error", "started_at": "a", "ended_at": "b",
          "error_type": "ValueError"},), "failed", None, 5, (delivery,),
    )  # fmt: skip
    answer = orjson.loads(async_call_json(call).body)  # type: ignore[arg-type]
    record = ExecutionRow("x1", 1, 2, "hello", None, "error", "2026-12-05T00:00:00.000Z")
    validator = _execution_validator()
    for valid in (answer, record.to_json("demo")):
        errors = [e.message for e in validator.iter_errors(valid)]
        assert not errors, (valid, errors)
    assert not validator.is_valid({**answer, "status": "ok"})  # neither variant
    assert not validator.is_valid({**answer, "callback": {"url": "u"}})

"""The admin API's OpenAPI document, built from its route table: valid OpenAPI 3,
and each query parameter typed as its own route reads it."""

from __future__ import annotations

from typing import Any

from openapi_spec_validator import validate

from daemon.admin.app import ROUTES
from daemon.admin.openapi import openapi_document


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

"""The gateway's OpenAPI document: valid OpenAPI 3.1, and every route the gateway
serves appears in it, on the aiohttp app and on the lean front of the real daemon."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openapi_spec_validator import validate

from daemon.gateway.app import Gateway, make_gateway
from daemon.gateway.openapi import ROUTES, STATUSES, openapi_document
from tests.helpers import DaemonProcess, running_daemon

SAMPLE = {"script": "no-such-script", "function": "f", "filename": "a.txt", "id": "no-such-id"}
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def test_the_document_is_valid_openapi_3() -> None:
    doc = openapi_document()
    validate(doc)
    assert doc["openapi"] == "3.1.0"
    assert doc["components"]["securitySchemes"]["ApiKey"]["scheme"] == "bearer"


def test_every_route_has_its_statuses_and_error_body() -> None:
    paths = openapi_document()["paths"]
    ids = [route.operation for route in ROUTES]
    assert len(ids) == len(set(ids))
    for route in ROUTES:
        op = paths[route.path][route.method.lower()]
        assert set(op["responses"]) == {str(s) for s in route.answers}
        assert all(int(s) in STATUSES for s in op["responses"])
        for status, answer in op["responses"].items():
            if int(status) >= 400 and status != "422":
                assert answer["content"]["application/json"]["schema"]["$ref"].endswith("/Error")
        assert op["security"] == ([{"ApiKey": []}] if route.keyed else [])
    call = paths["/v1/scripts/{script}/functions/{function}"]["post"]["responses"]
    assert {"400", "401", "403", "404", "413", "422", "429", "502", "503", "504"} <= set(call)


class _Handlers:
    async def put(self, request: Any) -> Any: ...
    async def run(self, request: Any) -> Any: ...
    async def call(self, request: Any) -> Any: ...
    async def get(self, request: Any) -> Any: ...
    async def delete(self, request: Any) -> Any: ...


def test_every_aiohttp_route_is_in_the_document() -> None:
    gateway = Gateway(None, None, None, None, 4096)  # type: ignore[arg-type]
    app = make_gateway(gateway, _Handlers(), _Handlers(), _Handlers())
    paths = openapi_document()["paths"]
    served = {
        (r.method, r.resource.canonical)
        for r in app.router.routes()
        if r.method not in ("HEAD", "*") and r.resource is not None
    }
    assert served == {(m.upper(), p) for p, ops in paths.items() for m in ops}
    without_uploads = make_gateway(gateway)
    assert not any("/uploads/" in r.resource.canonical for r in without_uploads.router.routes()
                   if r.resource is not None)  # fmt: skip


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    with running_daemon(Path(tmp_path_factory.mktemp("gateway-openapi"))) as d:
        yield d


def _sample_path(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: SAMPLE[m.group(1)], path)


def test_the_front_serves_the_document(daemon: DaemonProcess) -> None:
    r = daemon.gateway().request("GET", "/openapi.json")
    assert r.status == 200 and r.headers["Content-Type"] == "application/json"
    assert r.json() == openapi_document()
    r = daemon.gateway().request("POST", "/openapi.json", b"{}")
    assert r.status == 405 and r.headers["Allow"] == "GET"


def test_the_front_routes_each_documented_operation_and_only_those(
    daemon: DaemonProcess,
) -> None:
    gw = daemon.gateway()
    for path, ops in openapi_document()["paths"].items():
        url = _sample_path(path)
        for method in METHODS:
            r = gw.request(method, url, b"{}" if method in ("POST", "PUT") else None)
            kind = r.json()["error"]["type"] if r.status >= 400 else None
            if method.lower() in ops:
                assert kind != "method_not_allowed", (method, path, r)
                assert not (r.status == 404 and "no route" in r.body.decode()), (method, path)
            else:
                assert r.status == 405 and kind == "method_not_allowed", (method, path, r)
                assert set(r.headers["Allow"].split(", ")) == {m.upper() for m in ops}

"""The account uploads' total limit (uploads.max_total_bytes) on both routes that
write the folder: the gateway's PUT /v1/uploads/NAME and the admin POST /v1/uploads."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from daemon.admin.app import errors_to_json
from daemon.admin.call_routes import post_upload
from daemon.admin.http import CONFIG
from daemon.config.daemon_config import Config
from daemon.gateway.app import Gateway, make_gateway
from daemon.gateway.recorder import ExecutionRecorder
from daemon.gateway.serving_table import Routes
from daemon.gateway.uploads_route import Uploads
from daemon.keys.checker import KeyChecker
from tests.daemon.gateway.test_app import (
    KEY_A,
    RECORDS,
    FakeRunner,
    FakeStore,
    Recorded,
    auth,
    target,
)

LIMIT = 100


def files(folder: Path) -> dict[str, int]:
    """Every entry of the folder (temporaries too) and its size."""
    return {p.name: p.stat().st_size for p in folder.iterdir()}


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[TestClient[Any, Any]]:
    keys = KeyChecker(lambda key_id: RECORDS.get(key_id), verify=lambda h, s: True)
    routes = Routes(FakeRunner(), keys)  # type: ignore[arg-type]
    await routes.start(target("alpha", 1))
    recorder = ExecutionRecorder(Recorded(), keys, output_bytes=100)  # type: ignore[arg-type]
    gw = Gateway(routes, keys, FakeStore(), recorder, 4096)  # type: ignore[arg-type]
    uploads = Uploads(gw, tmp_path, max_bytes=1000, max_total_bytes=LIMIT)
    client = TestClient(TestServer(make_gateway(gw, uploads)))
    await client.start_server()
    yield client
    await client.close()
    keys.close()


@pytest.fixture
async def admin(tmp_path: Path) -> AsyncIterator[TestClient[Any, Any]]:
    app = web.Application(middlewares=[errors_to_json])
    app[CONFIG] = Config(
        account_uploads_dir=tmp_path, max_upload_file_bytes=1000, max_upload_total_bytes=LIMIT
    )
    app.router.add_post("/v1/uploads", post_upload)
    client = TestClient(TestServer(app))
    await client.start_server()
    yield client
    await client.close()


async def put(client: TestClient[Any, Any], name: str, size: int) -> tuple[int, Any]:
    r = await client.put(f"/v1/uploads/{name}", data=b"x" * size, headers=auth(KEY_A.key))
    return r.status, await r.json()


async def post(client: TestClient[Any, Any], name: str, size: int) -> tuple[int, Any]:
    r = await client.post("/v1/uploads?replace=1", data=b"x" * size, headers={"X-Filename": name})
    return r.status, await r.json()


async def test_the_gateway_route_keeps_the_folder_total(
    gateway: TestClient[Any, Any], tmp_path: Path
) -> None:
    await check_the_total(gateway, put, tmp_path)


async def test_the_admin_route_keeps_the_folder_total(
    admin: TestClient[Any, Any], tmp_path: Path
) -> None:
    await check_the_total(admin, post, tmp_path)


async def check_the_total(client: TestClient[Any, Any], send: Any, tmp_path: Path) -> None:
    assert (await send(client, "a.bin", 60))[0] == 201
    status, doc = await send(client, "b.bin", 41)
    assert status == 413
    assert doc["error"]["type"] == "payload_too_large"
    assert "uploads.max_total_bytes" in doc["error"]["message"]
    assert files(tmp_path) == {"a.bin": 60}  # nothing written, no temporary left
    assert (await send(client, "b.bin", 40))[0] == 201  # exactly the limit
    # Replacing a file counts only the difference.
    assert (await send(client, "a.bin", 55))[0] == 201
    assert (await send(client, "a.bin", 61))[0] == 413
    assert files(tmp_path) == {"a.bin": 55, "b.bin": 40}

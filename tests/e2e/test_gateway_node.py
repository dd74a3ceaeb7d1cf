"""The gateway's statuses produced by a real JavaScript script (CommonJS and an ES
module), on real sandboxed replicas, over real HTTP. One daemon for the module."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require_root
from tests.helpers import (
    TINY_PROFILES,
    AdminClient,
    DaemonProcess,
    GatewayClient,
    create_key,
    make_zip,
    running_daemon,
)

MAIN_JS = """\
function hello(p) { return "hello " + (p.name || "world"); }
function boom(p) { console.log("about to fail"); throw new TypeError(p.word || "bad"); }
function spin() { while (true) {} }
function hog() { const a = []; while (true) a.push(Buffer.alloc(16 << 20, 1)); }
function heap() { const a = []; while (true) a.push({ n: Math.random(), s: [1, 2, 3] }); }
function die() { process.exit(7); }
function chatty() {
  const line = "y".repeat(1023) + "\\n";
  for (let i = 0; i < 3072; i++) console.log(line);
  return "printed";
}
async function later(p) { await new Promise((r) => setTimeout(r, 10)); return p; }
module.exports = { hello, boom, spin, hog, heap, die, chatty, later };
"""
MAIN_MJS = """\
export async function twice(p) { return p.n * 2; }
export function env() { return process.env.UPLOADS_DIR; }
"""


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, build_cache: Path) -> Iterator[DaemonProcess]:
    require_root()
    with running_daemon(tmp_path_factory.mktemp("gwnode"), TINY_PROFILES, build_cache) as d:
        yield d


@pytest.fixture(scope="module")
def admin(daemon: DaemonProcess) -> AdminClient:
    client = daemon.client()
    archive = make_zip({"main.js": MAIN_JS})
    client.create("js", archive, language="javascript", deploy=True, timeout_s=1)
    # The same project with room to reach its memory limit: filling 256 MiB under a
    # 0.7 vCPU quota on a busy host can take longer than the 1 s above.
    client.create("js-mem", archive, language="javascript", deploy=True, timeout_s=30)
    esm = make_zip({"main.js": MAIN_MJS, "package.json": '{"type": "module"}'})
    client.create("esm", esm, language="javascript", deploy=True)
    for name in ("js", "js-mem", "esm"):
        script = client.wait_status(name)
        assert script["status"] == "Deployed", script
    return client


@pytest.fixture
def gw(daemon: DaemonProcess, admin: AdminClient) -> Iterator[GatewayClient]:
    client = daemon.gateway(create_key(admin, "js", f"k{time.monotonic_ns()}"))
    yield client
    client.close()


def recorded_status(admin: AdminClient, execution_id: str, timeout: float = 15) -> str:
    """The execution record's status, once the recorder's batch reached the store."""
    deadline = time.monotonic() + timeout
    while True:
        r = admin.request("GET", f"/v1/executions/{execution_id}")
        if r.status == 200 or time.monotonic() > deadline:
            assert r.status == 200, r.body
            return str(r.json()["status"])
        time.sleep(0.1)


def error(r: Any) -> dict[str, Any]:
    doc: dict[str, Any] = r.json()["error"]
    return doc


def test_ok_and_async(gw: GatewayClient) -> None:
    r = gw.call("js", "hello", {"name": "Ada"})
    assert (r.status, r.json()) == (200, {"result": "hello Ada"})
    assert gw.call("js", "later", {"x": [1]}).json() == {"result": {"x": [1]}}


def test_es_module(gw: GatewayClient, admin: AdminClient) -> None:
    key = create_key(admin, "esm")
    assert gw.call("esm", "twice", {"n": 21}, key=key).json() == {"result": 42}
    assert gw.call("esm", "env", key=key).json() == {"result": "/uploads"}


def test_throw_is_422(gw: GatewayClient) -> None:
    r = gw.call("js", "boom", {"word": "nope"})
    assert r.status == 422
    e = error(r)
    assert (e["type"], e["message"]) == ("TypeError", "nope")
    assert "boom" in e["traceback"] and "about to fail" in e["stdout"]


def test_timeout_is_504(gw: GatewayClient) -> None:
    r = gw.call("js", "spin")
    assert r.status == 504 and error(r)["type"] == "timeout"
    assert gw.call("js", "hello").status == 200


def test_out_of_memory(daemon: DaemonProcess, admin: AdminClient) -> None:
    gw = daemon.gateway(create_key(admin, "js-mem", "oom"))
    try:
        r = gw.call("js-mem", "hog")
        assert r.status == 502, r.body
        assert error(r)["type"] == "out_of_memory" and "256 MiB" in error(r)["message"]
        assert gw.call("js-mem", "hello").status == 200
    finally:
        gw.close()


def test_a_heap_bomb_is_out_of_memory_naming_the_heap_limit(
    daemon: DaemonProcess, admin: AdminClient
) -> None:
    # Objects on the V8 heap, not buffers: node gives up at --max-old-space-size (sized
    # from the profile's 256 MiB) and aborts, before the cgroup limit is reached.
    gw = daemon.gateway(create_key(admin, "js-mem", "heap"))
    try:
        r = gw.call("js-mem", "heap")
        assert r.status == 502, r.body
        e = error(r)
        assert e["type"] == "out_of_memory", e
        assert "JavaScript heap limit" in e["message"] and "256 MiB" in e["message"], e
        assert 100 << 20 < e["heap_limit_bytes"] < 256 << 20, e
        assert gw.call("js-mem", "hello").status == 200
        assert recorded_status(admin, r.headers["X-Scriptd-Execution-Id"]) == "oom"
    finally:
        gw.close()


def test_process_exit_is_a_crash(gw: GatewayClient) -> None:
    r = gw.call("js", "die")
    assert r.status == 502 and error(r)["type"] == "worker_crashed"
    assert error(r)["exit_code"] == 7
    assert gw.call("js", "hello").status == 200


def test_megabytes_of_output(gw: GatewayClient) -> None:
    r = gw.call("js", "chatty")
    assert (r.status, r.json()) == (200, {"result": "printed"})


def test_unknown_function_and_bad_body(gw: GatewayClient) -> None:
    assert gw.call("js", "nosuch").status == 404
    assert gw.call("js", "hello", raw=b"[]").status == 400

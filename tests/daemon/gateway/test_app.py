"""The gateway's handler in-process (aiohttp test server, fakes for the runner, the
store and argon2): the order of its checks, how each dispatcher outcome maps to
HTTP, the execution id header and what gets recorded."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from daemon.config.profiles import DEFAULT_PROFILES
from daemon.gateway.app import EXECUTION_HEADER, GATEWAY, Gateway, make_gateway
from daemon.gateway.recorder import Call, ExecutionRecorder
from daemon.gateway.serving_table import Routes
from daemon.keys.api_key import KeyRecord, mint_key
from daemon.keys.checker import KeyChecker
from daemon.serving.call_errors import (
    CallError,
    FunctionError,
    OutOfMemory,
    QueueFull,
    Timeout,
    UnknownFunction,
    WorkerCrashed,
)
from daemon.serving.dispatcher import CallResult
from daemon.serving.replica_runner import ServingVersion
from daemon.serving.target import RunTarget

KEY_A = mint_key()
KEY_B = mint_key()
RECORDS = {
    KEY_A.key_id: KeyRecord(KEY_A.key_id, "alpha", "key a", KEY_A.hash),
    KEY_B.key_id: KeyRecord(KEY_B.key_id, "beta", "key b", KEY_B.hash),
}


class FakeDispatcher:
    def __init__(self) -> None:
        self.outcome: Any = "value"
        self.calls: list[tuple[str, bytes | None, str | None]] = []
        self.functions: frozenset[str] | None = None  # None: the worker says

    async def call(
        self, function: str, payload: Any = None, *, payload_json: bytes | None = None,
        call_id: str | None = None,
    ) -> CallResult:  # fmt: skip
        self.calls.append((function, payload_json, call_id))
        if function == "nosuch":
            raise UnknownFunction("no function 'nosuch'")
        if isinstance(self.outcome, CallError):
            raise self.outcome
        return CallResult(call_id or "", self.outcome, "out", "", False, 1.0, 2.0, 0.1, 2.5, 9, "r")

    def submit(
        self, function: str, done: Any, payload: Any = None, *,
        payload_json: bytes | None = None, call_id: str | None = None,
    ) -> None:  # fmt: skip
        """`call` as the real dispatcher's submit: refusals raised, outcomes to `done`
        from a later callback."""
        self.calls.append((function, payload_json, call_id))
        if function == "nosuch":
            raise UnknownFunction("no function 'nosuch'")
        outcome = self.outcome
        if not isinstance(outcome, CallError):
            outcome = CallResult(
                call_id or "", outcome, "out", "", False, 1.0, 2.0, 0.1, 2.5, 9, "r"
            )
        asyncio.get_running_loop().call_soon(done, outcome)

    async def run(self, inputs_json: bytes, *, call_id: str | None = None) -> CallResult:
        """A code step that gives its inputs back as outputs, with a log; inputs
        named raise, queue or oom make it raise, find the queue full or die."""
        self.calls.append(("(step)", inputs_json, call_id))
        if isinstance(self.outcome, CallError):
            raise self.outcome
        inputs = inputs_json.decode()  # the names are looked for in the text
        log = {"ts": "2026-01-01T00:00:00Z", "message": "hi"}
        frame = {"outputs_json": inputs, "logs": [log], "logs_discarded": 0,
                 "stdout": "out", "stderr": ""}  # fmt: skip
        if '"raise"' in inputs:
            frame["error"] = {"type": "ValueError", "message": "no", "traceback": "line 1"}
            raised = FunctionError(frame)
            raised.replica = "r"
            raise raised
        if '"queue"' in inputs:
            raise QueueFull("the queue is full")
        if '"oom"' in inputs:
            killed = OutOfMemory("out of memory", memory_limit_bytes=1024)
            killed.replica = "r"
            raise killed
        return CallResult(call_id or "", None, "out", "", False, 1.0, 2.0, 0.1, 2.5, 9, "r", frame)


class FakeRunner:
    def __init__(self) -> None:
        self.versions: dict[str, ServingVersion] = {}

    def serving(self, script: str) -> ServingVersion | None:
        return self.versions.get(script)

    async def start(self, target: RunTarget) -> None:
        self.versions[target.script] = ServingVersion(target, FakeDispatcher(), None)  # type: ignore[arg-type]

    async def stop(self, script: str) -> None:
        self.versions.pop(script, None)

    async def close(self) -> None:
        self.versions.clear()


class FakeStore:
    def __init__(self) -> None:
        self.statuses = {"alpha": "Deployed", "beta": "Deployed", "gamma": "Ready to Deploy"}

    def get_script(self, name: str) -> Any:
        status = self.statuses.get(name)
        return None if status is None else type("S", (), {"status": status})()


class Recorded:
    def __init__(self) -> None:
        self.calls: list[Call] = []

    def insert_executions(self, rows: list[Any]) -> int:
        return 0

    def touch_api_keys_last_used(self, used: dict[str, float]) -> None:
        pass


def target(script: str, script_id: int) -> RunTarget:
    return RunTarget(
        script_id, script, 3, "python", "3.11", "/usr/bin/python3", Path("/src"), Path("/env"),
        Path("/ws"), {}, 30, ("f",), 1, 1, 75, DEFAULT_PROFILES[0],
    )  # fmt: skip


@pytest.fixture
async def setup() -> AsyncIterator[tuple[TestClient[Any, Any], FakeRunner, ExecutionRecorder]]:
    keys = KeyChecker(lambda key_id: RECORDS.get(key_id), verify=lambda h, s: True)
    runner = FakeRunner()
    routes = Routes(runner, keys)  # type: ignore[arg-type]
    await routes.start(target("alpha", 1))
    await routes.start(target("beta", 2))
    recorder = ExecutionRecorder(Recorded(), keys, output_bytes=100)  # type: ignore[arg-type]
    gw = Gateway(routes, keys, FakeStore(), recorder, 4096)  # type: ignore[arg-type]
    client = TestClient(TestServer(make_gateway(gw)))
    await client.start_server()
    yield client, runner, recorder
    await client.close()
    keys.close()


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def post(client: TestClient[Any, Any], url: str, body: bytes = b"{}", key: str = KEY_A.key):
    r = await client.post(url, data=body, headers=auth(key) if key else {})
    return r.status, await r.json(), r.headers


async def test_ok(setup: Any) -> None:
    client, runner, recorder = setup
    status, doc, headers = await post(client, "/v1/scripts/alpha/functions/f", b'{"a": 1}')
    assert (status, doc) == (200, {"result": "value"})
    cid = headers[EXECUTION_HEADER]
    assert runner.versions["alpha"].dispatcher.calls == [("f", b'{"a": 1}', cid)]
    (rec,) = list(recorder._buffer)
    assert (rec.id, rec.script_id, rec.version, rec.key_name, rec.status) == (
        cid, 1, 3, "key a", "ok",
    )  # fmt: skip
    assert (rec.input_bytes, rec.cpu_ms, rec.stdout) == (8, 1.0, "out")
    assert rec.values.result == '"value"'  # the answer's JSON, not encoded again


async def test_order_of_checks(setup: Any) -> None:
    client, _, recorder = setup
    # unknown script beats a bad key; not deployed beats a bad key
    assert (await post(client, "/v1/scripts/nosuch/functions/f", key="x"))[0] == 404
    assert (await post(client, "/v1/scripts/gamma/functions/f", key="x"))[0] == 503
    # a bad key beats a foreign script check and a bad body
    status, _, headers = await post(client, "/v1/scripts/alpha/functions/f", b"[", key="")
    assert status == 401 and headers["WWW-Authenticate"] == "Bearer"
    status, doc, _ = await post(client, "/v1/scripts/alpha/functions/f", b"[", key=KEY_B.key)
    assert status == 403 and doc["error"]["type"] == "forbidden"
    assert not recorder._buffer  # nothing recorded before the key passed
    status, doc, headers = await post(client, "/v1/scripts/alpha/functions/nosuch")
    assert status == 404 and EXECUTION_HEADER in headers
    assert [c.status for c in recorder._buffer] == ["rejected"]


async def test_an_unknown_function_is_named_before_the_body_is_judged(setup: Any) -> None:
    client, runner, recorder = setup
    runner.versions["alpha"].dispatcher.functions = frozenset({"f"})
    status, doc, headers = await post(client, "/v1/scripts/alpha/functions/nosuch", b"[")
    assert status == 404 and "nosuch" in doc["error"]["message"]
    assert EXECUTION_HEADER in headers and recorder._buffer[-1].status == "rejected"
    assert runner.versions["alpha"].dispatcher.calls == []


@pytest.mark.parametrize(
    ("body", "status"),
    [(b"nope", 400), (b"[1]", 400), (b"null", 400), (b'{"x": "' + b"a" * 5000 + b'"}', 413)],
)
async def test_bodies(setup: Any, body: bytes, status: int) -> None:
    client, _, recorder = setup
    got, _doc, headers = await post(client, "/v1/scripts/alpha/functions/f", body)
    assert got == status and EXECUTION_HEADER in headers
    assert recorder._buffer[-1].status == "rejected"


@pytest.mark.parametrize(
    ("error", "status", "kind", "record"),
    [
        (Timeout("too slow"), 504, "timeout", "timeout"),
        (OutOfMemory("oom", memory_limit_bytes=1 << 28), 502, "out_of_memory", "oom"),
        (WorkerCrashed("exit 3", exit_code=3, signal=None), 502, "worker_crashed", "crashed"),
        (QueueFull("full"), 429, "queue_full", "rejected"),
        (
            FunctionError({"error": {"type": "KeyError", "message": "'k'", "traceback": "tb"},
                           "stdout": "printed", "cpu_ms": 4.0}),
            422, "KeyError", "error",
        ),
    ],
)  # fmt: skip
async def test_dispatcher_outcomes(
    setup: Any, error: CallError, status: int, kind: str, record: str
) -> None:
    client, runner, recorder = setup
    runner.versions["alpha"].dispatcher.outcome = error
    got, doc, headers = await post(client, "/v1/scripts/alpha/functions/f")
    assert (got, doc["error"]["type"]) == (status, kind)
    assert (headers.get("Retry-After") == "1") == (status == 429)
    rec = recorder._buffer[-1]
    assert rec.status == record and rec.error is not None and rec.error["type"] == kind
    if record == "error":
        assert doc["error"]["stdout"] == "printed" and rec.stdout == "printed"
        assert "stdout" not in rec.error and rec.cpu_ms == 4.0
    if record == "oom":
        assert rec.peak_memory_bytes == 1 << 28


async def test_stopped_script_is_503_and_keys_forgotten(setup: Any) -> None:
    client, _, _ = setup
    assert (await post(client, "/v1/scripts/alpha/functions/f"))[0] == 200
    routes = client.server.app[GATEWAY].routes
    await routes.stop("alpha")
    assert routes.serving("alpha") is None and not routes.keys._keys_of_script.get("alpha")
    assert (await post(client, "/v1/scripts/alpha/functions/f"))[0] == 503


async def test_throttled_key_attempts_get_retry_after(setup: Any) -> None:
    client, _, _ = setup
    bad = "sk_" + "Z" * 12 + "_" + "b" * 43
    statuses = [(await post(client, "/v1/scripts/alpha/functions/f", key=bad)) for _ in range(8)]
    last = statuses[-1]
    assert last[0] == 429 and int(last[2]["Retry-After"]) >= 1


async def test_healthz(setup: Any) -> None:
    client, _, _ = setup
    r = await client.get("/healthz")
    assert r.status == 200 and await r.json() == {"ok": True}


async def test_other_routes_answer_json(setup: Any) -> None:
    client, _, _ = setup
    r = await client.get("/v1/scripts/alpha/functions/f")
    assert r.status == 405 and r.headers["Allow"] == "POST"
    assert (await r.json())["error"]["type"] == "method_not_allowed"
    r = await client.post("/nowhere")
    assert r.status == 404 and (await r.json())["error"]["type"] == "not_found"


BAD_KEY = "sk_" + "Z" * 12 + "_" + "b" * 43


async def proxied_client(trusted: list[str]) -> tuple[TestClient[Any, Any], KeyChecker]:
    keys = KeyChecker(lambda key_id: RECORDS.get(key_id), verify=lambda h, s: True)
    routes = Routes(FakeRunner(), keys)  # type: ignore[arg-type]
    await routes.start(target("alpha", 1))
    recorder = ExecutionRecorder(Recorded(), keys, output_bytes=100)  # type: ignore[arg-type]
    nets = tuple(ipaddress.ip_network(n) for n in trusted)
    gw = Gateway(routes, keys, FakeStore(), recorder, 4096, nets)  # type: ignore[arg-type]
    client = TestClient(TestServer(make_gateway(gw)))
    await client.start_server()
    return client, keys


async def failures_until_throttled(client: TestClient[Any, Any], forwarded: str) -> int:
    headers = {**auth(BAD_KEY), "X-Forwarded-For": forwarded}
    for n in range(1, 50):
        r = await client.post("/v1/scripts/alpha/functions/f", data=b"{}", headers=headers)
        if r.status == 429:
            return n
        assert r.status == 401
    raise AssertionError("never throttled")


async def test_forwarded_clients_behind_a_trusted_proxy_are_throttled_apart() -> None:
    client, keys = await proxied_client(["127.0.0.0/8", "10.9.0.0/16"])
    try:
        first = await failures_until_throttled(client, "203.0.113.7, 10.9.0.1")
        # Another client behind the same proxies still has its whole allowance.
        assert await failures_until_throttled(client, "198.51.100.20") == first
        # A forged left-most entry does not move the caller out of its bucket.
        assert await failures_until_throttled(client, "192.0.2.1, 203.0.113.7") == 1
    finally:
        await client.close()
        keys.close()


async def test_forwarded_header_from_an_untrusted_peer_is_ignored() -> None:
    client, keys = await proxied_client(["10.9.0.0/16"])  # the test peer, 127.0.0.1, is not
    try:
        first = await failures_until_throttled(client, "203.0.113.7")
        assert await failures_until_throttled(client, "198.51.100.20") == 1
        assert first > 1
    finally:
        await client.close()
        keys.close()

"""Asynchronous calls on the lean front and on the aiohttp gateway answer alike: the same
requests go to both (each over its own real apsw store), and the statuses, the JSON
bodies (ids and times aside) and the headers that matter must match."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from daemon.config.daemon_config import Config
from daemon.gateway.app import Gateway, make_gateway
from daemon.gateway.async_intake import AsyncIntake
from daemon.gateway.async_routes import AsyncRoutes
from daemon.gateway.bridge import AiohttpBridge
from daemon.gateway.calls import FrontCalls
from daemon.gateway.front import FrontServer
from daemon.gateway.recorder import ExecutionRecorder
from daemon.gateway.serving_table import Routes
from daemon.gateway.step_route import StepRoute
from daemon.keys.checker import KeyChecker
from daemon.store.database import Store
from tests.daemon.gateway.front_harness import KEYS, STEP_KEY
from tests.daemon.gateway.test_app import KEY_A, KEY_B, FakeRunner, Recorded, target
from tests.daemon.store.test_database import a_script

MAX_BODY = 4096
COMPARED_HEADERS = ("content-type", "preference-applied", "idempotent-replayed", "allow",
                    "www-authenticate")  # fmt: skip
ID = re.compile(r"[0-9a-f]{10,}-[0-9a-f]+")
TIME = re.compile(r"\d{4}-\d\d-\d\dT[\d:.]+Z")


@dataclass
class Side:
    url: str
    store: Store


async def _gateway(store: Store) -> Gateway:
    keys = KeyChecker(lambda key_id: KEYS.get(key_id), verify=lambda h, s: True)
    routes = Routes(FakeRunner(), keys)  # type: ignore[arg-type]
    await routes.start(target("alpha", 1))
    await routes.start(target("beta", 2))
    step = '{"inputs": {"x": "s"}, "outputs": {"x": "s"}}'
    await routes.start(replace(target("delta", 4), step_spec=step))
    recorder = ExecutionRecorder(Recorded(), keys)  # type: ignore[arg-type]
    return Gateway(routes, keys, store, recorder, MAX_BODY)


def _store(path: Path) -> Store:
    """Scripts with the ids of test_app's targets: alpha 1, beta 2, delta 4."""
    store = Store(path)
    for name in ("alpha", "beta", "spare", "delta"):
        store.insert_script(a_script(name))
    spare = store.get_script("spare")
    assert spare is not None
    store.delete_script(spare.id)
    return store


@pytest.fixture
async def sides(tmp_path: Path) -> AsyncIterator[list[Side]]:
    stores = [_store(tmp_path / "aiohttp.db"), _store(tmp_path / "front.db")]
    reference, lean = await _gateway(stores[0]), await _gateway(stores[1])
    runners = []
    for gw in (reference, lean):
        steps = StepRoute(gw)
        app = make_gateway(gw, None, steps, AsyncRoutes(gw, steps, AsyncIntake(gw, Config())))
        runners.append(web.AppRunner(app, access_log=None))
        await runners[-1].setup()
    site = web.TCPSite(runners[0], "127.0.0.1", 0)
    await site.start()
    aiohttp_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    assert runners[1].server is not None
    calls = FrontCalls(lean, AiohttpBridge(runners[1].server), AsyncIntake(lean, Config()))
    front = FrontServer(calls)
    front_port = await front.start("127.0.0.1", 0)
    yield [Side(f"http://127.0.0.1:{aiohttp_port}", stores[0]),
           Side(f"http://127.0.0.1:{front_port}", stores[1])]  # fmt: skip
    await front.close()
    for runner in runners:
        await runner.cleanup()
    for gw in (reference, lean):
        gw.keys.close()


async def _send(side: Side, method: str, path: str, body: bytes | None,
                headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:  # fmt: skip
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, side.url + path, data=body, headers=headers) as r,
    ):
        return r.status, {k.lower(): v for k, v in r.headers.items()}, await r.read()


def _normal(body: bytes) -> Any:
    text = TIME.sub("<time>", ID.sub("<id>", body.decode()))
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


async def both(sides: list[Side], method: str, path: str | list[str], body: bytes | None = None,
               **headers: str) -> list[tuple[int, dict[str, str], bytes]]:  # fmt: skip
    """The same request to both; `path` may differ per side (its own execution id)."""
    paths = path if isinstance(path, list) else [path, path]
    answers = [await _send(s, method, p, body, headers) for s, p in zip(sides, paths, strict=True)]
    (s1, h1, b1), (s2, h2, b2) = answers
    assert s1 == s2, (method, paths, headers, answers)
    assert _normal(b1) == _normal(b2), (method, paths, b1, b2)
    for name in COMPARED_HEADERS:
        assert h1.get(name) == h2.get(name), (name, h1, h2)
    assert ("location" in h1) == ("location" in h2)
    return answers


A = f"Bearer {KEY_A.key}"
ASYNC = "respond-async"


async def test_accepting_and_refusing_asynchronous_calls(sides: list[Side]) -> None:
    call = "/v1/scripts/alpha/functions/f"
    accepted = await both(sides, "POST", call, b'{"a": 1}', Authorization=A, Prefer=ASYNC)
    assert accepted[0][0] == 202 and accepted[0][1]["location"].startswith("/v1/executions/")
    for body, headers, status in [
        (b"[1]", {}, 400),
        (b"nope", {}, 400),
        (b"x" * (MAX_BODY + 1), {}, 413),
        (b"{}", {"X-Callback-Url": "ftp://x/y"}, 400),
        (b"{}", {"Idempotency-Key": "a" * 300}, 400),
        (b"{}", {"X-Callback-Url": "https://hooks.example.com/x", "Idempotency-Key": "k1"}, 202),
    ]:
        got = await both(sides, "POST", call, body, Authorization=A, Prefer=ASYNC, **headers)
        assert got[0][0] == status, got
    replayed = await both(sides, "POST", call, b"{}", Authorization=A, Prefer=ASYNC,
                          **{"Idempotency-Key": "k1"})  # fmt: skip
    assert replayed[0][1]["idempotent-replayed"] == "true"
    statuses = [
        (await both(sides, "POST", call, b"{}", Prefer=ASYNC))[0][0],  # no key
        (await both(sides, "POST", call, b"{}", Authorization=f"Bearer {KEY_B.key}",
                    Prefer=ASYNC))[0][0],  # another script's key
        (await both(sides, "POST", "/v1/scripts/alpha/run", b"{}", Authorization=A,
                    Prefer=ASYNC))[0][0],  # not a step
    ]  # fmt: skip
    assert statuses == [401, 403, 404]
    step = "/v1/scripts/delta/run?details=1"
    key = f"Bearer {STEP_KEY.key}"
    ran = await both(sides, "POST", step, b'{"inputs": {"x": {"s": "a"}}}', Authorization=key,
                     Prefer=f"wait=5, {ASYNC}")  # fmt: skip
    assert ran[0][0] == 202
    bad = await both(sides, "POST", step, b'{"inputs": 1}', Authorization=key, Prefer=ASYNC)
    assert bad[0][0] == 400
    # without the preference, the call is synchronous on both (the fake answers "value")
    sync = await both(sides, "POST", call, b"{}", Authorization=A, Prefer="return=minimal")
    assert sync[0][0] == 200


async def test_reading_and_canceling_a_call(sides: list[Side]) -> None:
    call = "/v1/scripts/alpha/functions/f"
    accepted = await both(sides, "POST", call, b"{}", Authorization=A, Prefer=ASYNC)
    paths = [headers["location"] for _, headers, _ in accepted]
    read = await both(sides, "GET", paths, Authorization=A)
    assert read[0][0] == 200 and orjson.loads(read[0][2])["status"] == "queued"
    assert (await both(sides, "GET", paths))[0][0] == 401
    assert (await both(sides, "GET", paths, Authorization=f"Bearer {KEY_B.key}"))[0][0] == 404
    assert (await both(sides, "GET", "/v1/executions/nosuch", Authorization=A))[0][0] == 404
    canceled = await both(sides, "DELETE", paths, Authorization=A)
    assert orjson.loads(canceled[0][2])["status"] == "canceled"
    again = await both(sides, "DELETE", paths, Authorization=A)
    assert again[0][0] == 409
    assert (await both(sides, "POST", paths, b"{}", Authorization=A))[0][0] == 405
